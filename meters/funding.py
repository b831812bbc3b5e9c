"""Funding: anyone moves coins from their wallet to any meter's account."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from utility.ledger.models import Transaction
from utility.ledger.services import IdempotencyConflict, InsufficientFunds, transaction_post, wallet_ensure
from utility.residents.services import ResidentError, check_amount_uk

from .models import Meter
from .tasks import decide_meters

MAX_REQUEST_ID = 100


class FundingError(ResidentError):
    """A refused funding; nothing moved."""


@dataclass(frozen=True, slots=True)
class Funded:
    transaction: Transaction
    created: bool  # False: this request id was already applied (a retry)
    meter_balance_uk: int


def meter_fund(resident, meter: Meter, amount_uk: int, request_id: str) -> Funded:
    """Move ``amount_uk`` µk from ``resident``'s wallet to ``meter``'s account.

    Any resident may fund any active meter (their house, a rental, a street
    light). Applied once per ``request_id``: a retry returns the original; the
    same id for a different resident, meter or amount is refused. The wallet
    cannot go below zero — checked under the row lock, so concurrent requests
    never overdraw it. A meter in debt simply has its debt paid first (its one
    balance rises). Decisions for the meter follow on commit.
    """
    check_amount_uk(amount_uk)
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > MAX_REQUEST_ID:
        raise FundingError(f"a request id of 1 to {MAX_REQUEST_ID} characters is required")
    if not meter.active:
        raise FundingError(f"meter {meter.public_id} is not active")
    wallet = wallet_ensure(resident)
    with transaction.atomic():
        try:
            posted = transaction_post(
                f"fund:{request_id}",
                "funding",
                [(wallet.pk, -amount_uk), (meter.account_id, amount_uk)],
                memo=f"{resident.get_username()} funds {meter.public_id}",
                floors_uk={wallet.pk: 0},
            )
        except InsufficientFunds as exc:
            raise FundingError(f"your wallet holds {exc.balance_uk} µk; {amount_uk} µk cannot be moved") from exc
        except IdempotencyConflict as exc:
            raise FundingError(f"request id {request_id!r} was already used for a different funding") from exc
        if posted.created:
            transaction.on_commit(lambda: decide_meters.delay([meter.pk]))
    meter.account.refresh_from_db(fields=["balance_uk"])
    return Funded(posted.transaction, posted.created, meter.account.balance_uk)
