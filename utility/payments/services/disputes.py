"""Refunds (an operator's action) and disputes (Stripe's events).

A refund takes the coins back first — refused when they were already spent,
unless the operator accepts a negative wallet — and only then asks Stripe for
the money back (``refund_submit``, after commit, retried by the reconciler).
A dispute takes the disputed coins back and freezes the wallet until it is
closed; a won dispute gives them back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from utility.audit.services import operator_action_record
from utility.ledger.services import InsufficientFunds
from utility.lib.money import format_uk

from ..client import ProviderDeclined, ProviderUnavailable, payments_client
from ..models import Dispute, DisputeStatus, Refund, RefundStatus, TopUp, TopUpStatus
from .common import PaymentsError, object_id, uuid_or_none
from .topups import topup_for_charge, topup_ledger_sync, topup_link

logger = logging.getLogger(__name__)

# Stripe's dispute statuses, reduced to ours. An inquiry closed without a
# chargeback ("warning_closed") leaves the money with us, like a win.
REFUND_STUCK_AFTER = timedelta(minutes=10)
DISPUTE_STATUS = {"won": DisputeStatus.WON, "warning_closed": DisputeStatus.WON, "lost": DisputeStatus.LOST}


def topup_refund(topup_id: object, operator: str, reason: str, now: datetime, accept_negative: bool = False) -> Refund:
    """Refund a whole top-up: its coins leave the wallet now, the money follows.

    Refused when the top-up is not paid, has a dispute, or was refunded; and
    when the wallet no longer holds the coins, unless ``accept_negative``
    (the wallet then goes below zero and is frozen). Recorded as an operator
    action. The Stripe refund (idempotency key ``refund:<refund id>``) is
    sent after commit.
    """
    if not reason.strip():
        raise PaymentsError("a reason is required to refund a top-up")
    with transaction.atomic():
        key = uuid_or_none(topup_id)
        topup = TopUp.objects.select_for_update().filter(pk=key).first() if key else None
        if topup is None:
            raise PaymentsError(f"no top-up {topup_id}")
        _refund_check(topup)
        refund = Refund.objects.create(
            topup=topup,
            amount_cents=topup.amount_cents,
            operator=operator,
            reason=reason,
            accept_negative=accept_negative,
            created_at=now,
        )
        try:
            topup_ledger_sync(topup, wallet_floor_uk=None if accept_negative else 0)
        except InsufficientFunds as exc:
            raise PaymentsError(
                f"the coins were already spent: the wallet holds {format_uk(exc.balance_uk)} k of the "
                f"{format_uk(exc.needed_uk)} k to take back; refund anyway only by accepting a negative wallet"
            ) from exc
        operator_action_record(
            operator,
            "topup_refund",
            f"topup:{topup.pk}",
            now,
            reason,
            {"amount_cents": topup.amount_cents, "coins_uk": topup.coins_uk, "accept_negative": accept_negative},
        )
        # robust: a broker hiccup leaves the refund "requested" for the reconciler.
        transaction.on_commit(lambda: _refund_submit_later(refund.pk), robust=True)
    return refund


def _refund_check(topup: TopUp) -> None:
    if topup.status != TopUpStatus.PAID or not topup.credited_uk:
        raise PaymentsError("only a paid, credited top-up can be refunded")
    if topup.disputes.exists():
        raise PaymentsError("this payment is disputed; the dispute decides where the money goes")
    if topup.refunded_cents or topup.refunds.exclude(status=RefundStatus.FAILED).exists():
        raise PaymentsError("this top-up was already refunded")


def _refund_submit_later(refund_id: object) -> None:
    from ..tasks import refund_submit_task

    refund_submit_task.delay(str(refund_id))


def refund_submit(refund_id: object) -> Refund:
    """Ask Stripe for the refund (safe to repeat: same idempotency key).

    Unavailable: left ``requested`` for the reconciler. Declined: the refund
    failed and the coins go back to the wallet.
    """
    refund = Refund.objects.select_related("topup").get(pk=refund_id)
    if refund.status != RefundStatus.REQUESTED:
        return refund
    try:
        result = payments_client().refund_create(
            payment_intent_id=refund.topup.payment_intent_id or "",
            amount_cents=refund.amount_cents,
            metadata={"topup_id": str(refund.topup_id), "refund_id": str(refund.pk)},
            idempotency_key=f"refund:{refund.pk}",
        )
    except ProviderUnavailable as exc:
        logger.warning("refund %s not sent yet: %s", refund.pk, exc)
        return refund
    except ProviderDeclined as exc:
        return _refund_fail(refund.pk, str(exc))
    if result.status in {"failed", "canceled"}:
        return _refund_fail(refund.pk, f"Stripe refund {result.id} {result.status}")
    Refund.objects.filter(pk=refund.pk, status=RefundStatus.REQUESTED).update(
        status=RefundStatus.SUCCEEDED, stripe_refund_id=result.id
    )
    refund.refresh_from_db()
    return refund


@transaction.atomic
def _refund_fail(refund_id: object, error: str) -> Refund:
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    topup = TopUp.objects.select_for_update().get(pk=refund.topup_id)
    if refund.status == RefundStatus.REQUESTED:
        refund.status, refund.error = RefundStatus.FAILED, error[:500]
        refund.save(update_fields=["status", "error"])
        topup_ledger_sync(topup)  # the coins go back
    return refund


def on_dispute(dispute: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``charge.dispute.created`` / ``.closed``: record the dispute (status only
    forward: open → won | lost) and re-derive the top-up's coins."""
    payment_intent_id = object_id(dispute.get("payment_intent"))
    charge_id = object_id(dispute.get("charge"))
    topup = topup_for_charge(payment_intent_id, charge_id, dispute)
    linked = topup_link(topup, payment_intent_id, charge_id)
    status = DISPUTE_STATUS.get(str(dispute.get("status")), DisputeStatus.OPEN)
    row, created = Dispute.objects.select_for_update().get_or_create(
        id=str(dispute["id"]),
        defaults={
            "topup": topup,
            "amount_cents": int(dispute.get("amount") or 0),
            "status": status,
            "reason": str(dispute.get("reason") or "")[:100],
            "created_at": now,
            "closed_at": None if status == DisputeStatus.OPEN else now,
        },
    )
    if not created and Dispute.RANK[status] > Dispute.RANK[row.status]:
        row.status, row.closed_at = status, now
        row.save(update_fields=["status", "closed_at"])
    topup_ledger_sync(topup)
    return linked


def refunds_reconcile(now: datetime) -> int:
    """Send again the refunds whose Stripe call did not go through (Stripe was
    unavailable, or the worker died after the coins were taken back)."""
    stale = Refund.objects.filter(status=RefundStatus.REQUESTED, created_at__lt=now - REFUND_STUCK_AFTER)
    refund_ids = list(stale.values_list("pk", flat=True)[:500])
    for refund_id in refund_ids:
        refund_submit(refund_id)
    return len(refund_ids)
