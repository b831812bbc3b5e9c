"""Funding: anyone moves coins from their own wallet to any meter's account."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from utility.audit.services import operator_action_record
from utility.ledger.models import Account, Transaction
from utility.ledger.services import IdempotencyConflict, InsufficientFunds, transaction_post, wallet_ensure
from utility.payments.selectors import wallet_freeze_reason
from utility.residents.services import ResidentError, check_amount_uk

from .models import Meter
from .tasks import decide_meters

MAX_REQUEST_ID = 100


class FundingError(ResidentError):
    """A refused funding; nothing moved."""


@dataclass(frozen=True, slots=True)
class Funded:
    transaction: Transaction
    created: bool  # False: this request id was already applied (a retry); nothing moved now
    meter_balance_uk: int  # after this funding (a retry: the balance now)
    debt_paid_uk: int  # how much of the amount paid off the meter's debt (0 for a retry)


def _check_request(resident, request_id: object) -> str:
    if not getattr(resident, "is_authenticated", False) or resident.pk is None:
        raise FundingError("only a signed-in resident can fund a meter")
    if not resident.is_active:
        raise FundingError(f"resident {resident.get_username()!r} is not active")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > MAX_REQUEST_ID:
        raise FundingError(f"a request id of 1 to {MAX_REQUEST_ID} characters is required")
    return request_id


def meter_fund(resident, meter: Meter, amount_uk: int, request_id: str, *, operator: str | None = None) -> Funded:
    """Move ``amount_uk`` µk from ``resident``'s own wallet to ``meter``'s account.

    Only ever debits ``resident``'s wallet: there is no way to name another.
    Any resident may fund any active meter (their house, a rental, a street
    light). Applied once per (resident, ``request_id``): a retry returns the
    original; the same id for a different meter or amount is refused. The
    wallet cannot go below zero — checked under the row locks, so concurrent
    requests never overdraw it. A meter in debt has its debt paid first: its
    one balance rises by the amount, and ``debt_paid_uk`` says how much of it
    went to the debt. Decisions for the meter follow on commit. ``operator``
    (the CLI acting for a resident) is recorded in the audit log. Raises
    ``FundingError`` (a ``ResidentError``); nothing moves then.
    """
    check_amount_uk(amount_uk)
    request_id = _check_request(resident, request_id)
    if frozen := wallet_freeze_reason(resident):  # an open dispute, or below zero after a refund
        raise FundingError(f"your wallet is frozen: {frozen}")
    wallet = wallet_ensure(resident)
    with transaction.atomic():
        fresh = Meter.objects.filter(pk=meter.pk).values_list("active", "account_id").first()
        if fresh is None or not fresh[0]:
            raise FundingError(f"meter {meter.public_id} is not active")
        # Lock both accounts in id order (the ledger's global order, so no
        # deadlock) to read the meter's balance before the movement.
        locked = dict(
            Account.objects.select_for_update().filter(pk__in=[wallet.pk, fresh[1]]).order_by("pk")
            .values_list("pk", "balance_uk")
        )  # fmt: skip
        try:
            posted = transaction_post(
                f"fund:{resident.pk}:{request_id}",
                "funding",
                [(wallet.pk, -amount_uk), (fresh[1], amount_uk)],
                memo=f"{resident.get_username()} funds {meter.public_id}",
                floors_uk={wallet.pk: 0},
            )
        except InsufficientFunds as exc:
            raise FundingError(f"your wallet holds {exc.balance_uk} µk; {amount_uk} µk cannot be moved") from exc
        except IdempotencyConflict as exc:
            raise FundingError(f"request id {request_id!r} was already used for a different funding") from exc
        debt_paid_uk = min(amount_uk, max(0, -locked[fresh[1]])) if posted.created else 0
        if posted.created:
            if operator is not None:
                operator_action_record(
                    operator, "meter_fund", f"meter:{meter.public_id}", posted.transaction.created_at,
                    f"funded from {resident.get_username()}'s wallet",
                    {"amount_uk": amount_uk, "request_id": request_id, "resident": resident.get_username()},
                )  # fmt: skip
            # robust: the coins moved; a broker or worker hiccup must not
            # turn that into an error (the next settlement decides again).
            transaction.on_commit(lambda: decide_meters.delay([meter.pk], funded=True), robust=True)
        balance_uk = Account.objects.values_list("balance_uk", flat=True).get(pk=fresh[1])
    return Funded(posted.transaction, posted.created, balance_uk, debt_paid_uk)
