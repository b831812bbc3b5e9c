"""Withdrawing: coins held at once, then a Transfer to the producer's connected
account, then a Payout to their bank; ``payout.paid`` finalises.

requested → held → transfer_created → payout_created → paid | failed

Each step commits on its own, so a crash can stop the machine between any two
of them; ``withdrawals_reconcile`` picks up what is stuck. No step can pay
twice: the Transfer's idempotency key is the withdrawal id (and its
``transfer_group``, looked up first, outlives Stripe's 24-hour key memory), the
Payout's is ``payout:<id>`` (and its metadata is looked up first), and every
status change is a conditional UPDATE from the state the step started in.

Ledger: hold ``wallet → payouts_in_flight`` (floor 0), paid
``payouts_in_flight → fiat_issued``, failed returns the coins to the wallet.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from utility.ledger.models import AccountKind
from utility.ledger.services import InsufficientFunds, system_account, transaction_post, wallet_ensure
from utility.lib.money import format_uk
from utility.residents.services import check_amount_uk

from ..client import ProviderDeclined, ProviderObject, ProviderUnavailable, payments_client
from ..models import ConnectedAccount, Withdrawal, WithdrawalStatus
from ..pricing import WithdrawalQuote, withdrawal_quote
from ..selectors import wallet_freeze_reason
from .common import PaymentsError, metadata_of, uuid_or_none
from .topups import topup_price

logger = logging.getLogger(__name__)

S = WithdrawalStatus
WITHDRAWAL_MIN_CENTS = 100
MAX_REQUEST_ID = 100
# A withdrawal untouched this long in a middle state is taken up by the reconciler.
STUCK_AFTER = timedelta(minutes=10)
# Payouts take days; ask Stripe about one whose event has not come after this.
PAYOUT_POLL_AFTER = timedelta(days=3)
# reversal_id of a failed withdrawal that never had a transfer.
NO_TRANSFER = "none"


def withdrawal_quote_for(user, amount_uk: int) -> WithdrawalQuote:
    """What withdrawing ``amount_uk`` pays ``user`` (rounded down, shown first)."""
    check_amount_uk(amount_uk)
    quote = withdrawal_quote(amount_uk, topup_price(user))
    if quote.amount_cents < WITHDRAWAL_MIN_CENTS:
        raise PaymentsError(
            f"a withdrawal pays at least {WITHDRAWAL_MIN_CENTS} cents; {quote.coins} coins pay {quote.amount}"
        )
    return quote


def withdrawal_request(user, amount_uk: int, request_id: str, now: datetime) -> Withdrawal:
    """Ask to withdraw ``amount_uk``: the coins are held at once, the money follows.

    Refused (nothing written) beyond the wallet — enforced under the wallet's
    row lock in the hold's transaction — while the wallet is frozen, or
    without a connected account that can receive payouts. Applied once per
    ``request_id``: a retry returns the first withdrawal.
    """
    if not isinstance(request_id, str) or not 0 < len(request_id.strip()) <= MAX_REQUEST_ID:
        raise PaymentsError(f"a request id of 1 to {MAX_REQUEST_ID} characters is required")
    existing = Withdrawal.objects.filter(request_id=request_id).first()
    if existing is not None:
        return _same_request(existing, user, amount_uk)
    quote = withdrawal_quote_for(user, amount_uk)
    account = ConnectedAccount.objects.filter(user=user, payouts_enabled=True).first()
    if account is None:
        raise PaymentsError("connect your bank account (Stripe onboarding) before withdrawing")
    try:
        with transaction.atomic():
            withdrawal = _create_and_hold(user, quote, account.stripe_account_id, request_id, now)
            # robust: the hold is committed; a broker hiccup is the reconciler's.
            transaction.on_commit(lambda: _advance_later(withdrawal.pk), robust=True)
    except IntegrityError:
        return _same_request(Withdrawal.objects.get(request_id=request_id), user, amount_uk)
    return withdrawal


def _same_request(existing: Withdrawal, user, amount_uk: int) -> Withdrawal:
    if existing.user_id != user.pk or existing.amount_uk != amount_uk:
        raise PaymentsError("this request id was already used for a different withdrawal")
    return existing


def _create_and_hold(user, quote: WithdrawalQuote, account_id: str, request_id: str, now: datetime) -> Withdrawal:
    withdrawal = Withdrawal.objects.create(
        user=user,
        request_id=request_id,
        amount_uk=quote.amount_uk,
        amount_cents=quote.amount_cents,
        currency=quote.price.currency,
        coin_price_cents=quote.price.coin_price_cents,
        stripe_account_id=account_id,
        created_at=now,
        updated_at=now,
    )
    # Checked inside the transaction, after the row exists: a dispute that
    # lands between the check and the commit is caught by the transfer step.
    reason = wallet_freeze_reason(user)
    if reason:
        raise PaymentsError(f"withdrawals are paused: {reason}")
    wallet = wallet_ensure(user)
    in_flight = system_account(AccountKind.PAYOUTS_IN_FLIGHT)
    try:
        transaction_post(
            f"withdrawal_hold:{withdrawal.pk}",
            "withdrawal_hold",
            [(wallet.pk, -quote.amount_uk), (in_flight.pk, quote.amount_uk)],
            memo=f"withdrawal {withdrawal.pk}: {quote.amount_cents} {quote.price.currency}",
            floors_uk={wallet.pk: 0},
        )
    except InsufficientFunds as exc:
        raise PaymentsError(
            f"your wallet holds {format_uk(exc.balance_uk)} k; {format_uk(quote.amount_uk)} k cannot be withdrawn"
        ) from exc
    withdrawal.status = S.HELD
    withdrawal.save(update_fields=["status"])
    return withdrawal


def _advance_later(withdrawal_id: object) -> None:
    from ..tasks import withdrawal_advance_task

    withdrawal_advance_task.delay(str(withdrawal_id))


def _move(withdrawal: Withdrawal, expected: str, to: str, now: datetime, **fields: Any) -> bool:
    """Conditional UPDATE: only from ``expected``; False if another worker moved it."""
    moved = Withdrawal.objects.filter(pk=withdrawal.pk, status=expected).update(status=to, updated_at=now, **fields)
    return moved == 1


def withdrawal_advance(withdrawal_id: object, now: datetime) -> Withdrawal:
    """Take the withdrawal through every step it can do now (safe to repeat):
    transfer, then payout; it stops at ``payout_created`` (the bank's answer
    comes as an event), at a terminal state, or when Stripe is unavailable."""
    for _ in range(3):
        withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
        step = {S.HELD: _step_transfer, S.TRANSFER_CREATED: _step_payout}.get(withdrawal.status)
        if step is None or not step(withdrawal, now):
            break
    return Withdrawal.objects.get(pk=withdrawal_id)


def _step_transfer(withdrawal: Withdrawal, now: datetime) -> bool:
    """held → transfer_created. A dispute since the hold stops it here."""
    reason = wallet_freeze_reason(withdrawal.user)
    if reason:
        withdrawal_fail(withdrawal.pk, f"stopped before any transfer: {reason}", now)
        return False
    client = payments_client()
    group = str(withdrawal.pk)
    try:
        transfer = client.transfer_find(transfer_group=group) or client.transfer_create(
            amount_cents=withdrawal.amount_cents,
            currency=withdrawal.currency,
            destination=withdrawal.stripe_account_id,
            transfer_group=group,
            metadata={"withdrawal_id": group, "user_id": str(withdrawal.user_id)},
            idempotency_key=group,
        )
    except ProviderUnavailable as exc:
        logger.warning("withdrawal %s: transfer not made yet: %s", withdrawal.pk, exc)
        return False
    except ProviderDeclined as exc:
        withdrawal_fail(withdrawal.pk, f"transfer refused: {exc}", now)
        return False
    if _move(withdrawal, S.HELD, S.TRANSFER_CREATED, now, transfer_id=transfer.id):
        return True
    # Another worker moved it meanwhile. If it failed the withdrawal (a
    # dispute, a refusal), it may have found no transfer to reverse before
    # ours existed: have the reversal look again.
    if Withdrawal.objects.filter(pk=withdrawal.pk, status=S.FAILED, reversal_id=NO_TRANSFER).update(reversal_id=""):
        transaction.on_commit(lambda: _reverse_later(withdrawal.pk), robust=True)
    return False


def _step_payout(withdrawal: Withdrawal, now: datetime) -> bool:
    """transfer_created → payout_created (the bank's answer comes as an event)."""
    client = payments_client()
    try:
        payout = client.payout_find(
            account_id=withdrawal.stripe_account_id, withdrawal_id=str(withdrawal.pk)
        ) or client.payout_create(
            account_id=withdrawal.stripe_account_id,
            amount_cents=withdrawal.amount_cents,
            currency=withdrawal.currency,
            metadata={"withdrawal_id": str(withdrawal.pk)},
            idempotency_key=f"payout:{withdrawal.pk}",
        )
    except ProviderUnavailable as exc:
        logger.warning("withdrawal %s: payout not made yet: %s", withdrawal.pk, exc)
        return False
    except ProviderDeclined as exc:
        withdrawal_fail(withdrawal.pk, f"payout refused: {exc}", now)
        return False
    return _move(withdrawal, S.TRANSFER_CREATED, S.PAYOUT_CREATED, now, payout_id=payout.id)


@transaction.atomic
def withdrawal_settle_paid(withdrawal_id: object, payout_id: str, now: datetime) -> Withdrawal:
    """The bank was paid: the held coins leave circulation (``payouts_in_flight
    → fiat_issued``). Only forward: a failed withdrawal stays failed."""
    withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal_id)
    if Withdrawal.RANK[withdrawal.status] >= Withdrawal.RANK[S.PAID]:
        return withdrawal
    in_flight = system_account(AccountKind.PAYOUTS_IN_FLIGHT)
    issued = system_account(AccountKind.FIAT_ISSUED)
    transaction_post(
        f"withdrawal_paid:{withdrawal.pk}",
        "withdrawal_paid",
        [(in_flight.pk, -withdrawal.amount_uk), (issued.pk, withdrawal.amount_uk)],
        memo=f"withdrawal {withdrawal.pk} paid by payout {payout_id}",
    )
    withdrawal.status, withdrawal.updated_at = S.PAID, now
    withdrawal.payout_id = withdrawal.payout_id or payout_id
    withdrawal.save(update_fields=["status", "updated_at", "payout_id"])
    return withdrawal


@transaction.atomic
def withdrawal_fail(withdrawal_id: object, reason: str, now: datetime) -> Withdrawal:
    """The money did not reach the bank: the coins go back to the wallet, and
    a transfer already made is reversed (after commit). Also after ``paid``:
    Stripe may report a payout failed days later."""
    withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal_id)
    if withdrawal.status == S.FAILED:
        return withdrawal
    if withdrawal.status != S.REQUESTED:  # a requested row holds nothing yet
        source = AccountKind.FIAT_ISSUED if withdrawal.status == S.PAID else AccountKind.PAYOUTS_IN_FLIGHT
        wallet = wallet_ensure(withdrawal.user)
        transaction_post(
            f"withdrawal_return:{withdrawal.pk}",
            "withdrawal_return",
            [(system_account(source).pk, -withdrawal.amount_uk), (wallet.pk, withdrawal.amount_uk)],
            memo=f"withdrawal {withdrawal.pk} failed: {reason}",
        )
    withdrawal.status, withdrawal.updated_at, withdrawal.failure_reason = S.FAILED, now, reason[:500]
    withdrawal.save(update_fields=["status", "updated_at", "failure_reason"])
    # Even from "held": a crash may have left a transfer that was never recorded.
    transaction.on_commit(lambda: _reverse_later(withdrawal.pk), robust=True)
    return withdrawal


def _reverse_later(withdrawal_id: object) -> None:
    from ..tasks import withdrawal_reverse_task

    withdrawal_reverse_task.delay(str(withdrawal_id))


def withdrawal_reverse_transfer(withdrawal_id: object, now: datetime) -> Withdrawal:
    """Bring a failed withdrawal's transfer back from the connected account
    (idempotency key ``reversal:<id>``; safe to repeat). Never called inside a
    database transaction: like every provider call, it must not be undone by
    a rollback on our side."""
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    if withdrawal.status != S.FAILED or withdrawal.reversal_id:
        return withdrawal
    client = payments_client()
    try:
        transfer = (
            ProviderObject(withdrawal.transfer_id)
            if withdrawal.transfer_id
            else client.transfer_find(transfer_group=str(withdrawal.pk))
        )
        if transfer is None:
            reversal = ProviderObject(NO_TRANSFER)  # it failed before any transfer was made
        else:
            reversal = client.transfer_reverse(
                transfer_id=transfer.id,
                metadata={"withdrawal_id": str(withdrawal.pk)},
                idempotency_key=f"reversal:{withdrawal.pk}",
            )
    except ProviderUnavailable as exc:
        logger.warning("withdrawal %s: transfer not reversed yet: %s", withdrawal.pk, exc)
        return withdrawal
    except ProviderDeclined as exc:
        logger.error("withdrawal %s: transfer reversal refused: %s", withdrawal.pk, exc)
        reversal = ProviderObject("refused")
    Withdrawal.objects.filter(pk=withdrawal.pk, reversal_id="").update(reversal_id=reversal.id[:255], updated_at=now)
    withdrawal.refresh_from_db()
    return withdrawal


def withdrawals_reconcile(now: datetime) -> int:
    """Take up withdrawals stuck in a middle state (a crash, Stripe down), ask
    Stripe about payouts whose event is overdue, and retry reversals. Returns
    how many withdrawals were looked at."""
    stuck = Withdrawal.objects.filter(status__in=[S.HELD, S.TRANSFER_CREATED], updated_at__lt=now - STUCK_AFTER)
    count = 0
    for withdrawal_id in stuck.values_list("pk", flat=True)[:500]:
        withdrawal_advance(withdrawal_id, now)
        count += 1
    overdue = Withdrawal.objects.filter(status=S.PAYOUT_CREATED, updated_at__lt=now - PAYOUT_POLL_AFTER)
    for withdrawal in overdue[:500]:
        _payout_poll(withdrawal, now)
        count += 1
    unreversed = Withdrawal.objects.filter(status=S.FAILED, reversal_id="", updated_at__lt=now - STUCK_AFTER)
    for withdrawal_id in unreversed.values_list("pk", flat=True)[:500]:
        withdrawal_reverse_transfer(withdrawal_id, now)
        count += 1
    return count


def _payout_poll(withdrawal: Withdrawal, now: datetime) -> None:
    try:
        payout = payments_client().payout_retrieve(
            account_id=withdrawal.stripe_account_id, payout_id=withdrawal.payout_id
        )
    except (ProviderUnavailable, ProviderDeclined) as exc:
        logger.warning("withdrawal %s: payout %s not checked: %s", withdrawal.pk, withdrawal.payout_id, exc)
        return
    if payout.status == "paid":
        withdrawal_settle_paid(withdrawal.pk, payout.id, now)
    elif payout.status in {"failed", "canceled"}:
        withdrawal_fail(withdrawal.pk, f"payout {payout.status}", now)


def _withdrawal_for(obj: dict[str, Any], **by_id: str) -> Withdrawal | None:
    key = uuid_or_none(metadata_of(obj).get("withdrawal_id") or obj.get("transfer_group"))
    found = Withdrawal.objects.filter(pk=key).first() if key else None
    return found or Withdrawal.objects.filter(**by_id).first()


def on_payout(payout: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``payout.paid`` finalises, ``payout.failed`` returns the coins; a payout
    that is not a withdrawal's (none are expected: payouts are manual) is ignored."""
    withdrawal = _withdrawal_for(payout, payout_id=str(payout.get("id") or ""))
    if withdrawal is None:
        logger.info("payout %s is not a withdrawal's; ignored", payout.get("id"))
    elif event["type"] == "payout.paid":
        withdrawal_settle_paid(withdrawal.pk, str(payout["id"]), now)
    else:
        failure = payout.get("failure_message") or payout.get("failure_code") or "the bank refused it"
        withdrawal_fail(withdrawal.pk, f"payout failed: {failure}", now)
    return []


def on_transfer_reversed(transfer: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``transfer.reversed``: a withdrawal not yet paid has failed (coins back);
    for a failed one this is the reversal we asked for."""
    withdrawal = _withdrawal_for(transfer, transfer_id=str(transfer.get("id") or ""))
    if withdrawal is None:
        return []
    if withdrawal.status == S.PAID:
        logger.error("transfer %s of paid withdrawal %s was reversed", transfer.get("id"), withdrawal.pk)
    elif withdrawal.status != S.FAILED:
        withdrawal_fail(withdrawal.pk, "the transfer was reversed", now)
    reversals = (transfer.get("reversals") or {}).get("data") or [{}]
    Withdrawal.objects.filter(pk=withdrawal.pk, reversal_id="").update(
        reversal_id=str(reversals[0].get("id") or "reversed")[:255]
    )
    return []
