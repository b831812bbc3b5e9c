"""Bilateral contracts under a buyer's standing limits (Distributed Charge).

The buyer publishes limits for one of their meters; a seller's offer inside
all of them (``domain.limits_violations``) is accepted at once, with no
click from the buyer: the limits are the buyer's consent. The deposit is then
taken from the buyer's wallet into the contract's escrow (or, if the wallet
cannot pay it yet, when the buyer pays it), and the buyer's meter is told
``connect``. Settlement pays the seller each interval from the escrow for
what both meters measured; after it, the buyer's wallet refills the escrow
by the same amount (``delivery.contracts_review``): the deposit keeps the
seller paid one interval ahead, so a seller never delivers unpaid energy.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from meters.models import Grid, Meter
from utility.ledger.services import InsufficientFunds, transaction_post, wallet_ensure
from utility.lib.timeutil import ensure_utc, format_utc, is_aligned

from ..domain import VIOLATION_TEXT, BuyerLimits, SellerTerms, limits_violations
from ..models import OPEN_CONTRACT_STATUSES, BuyerLimit, Contract, ContractKind, ContractStatus
from .common import (
    DEFAULT_TOLERANCE_BP,
    DEFAULT_V_MAX_DV,
    DEFAULT_V_MIN_DV,
    MAX_AMOUNT_UK,
    MAX_ENERGY_WH,
    MAX_PRICE_UK_PER_KWH,
    MarketError,
    check_band,
    check_int,
    check_trader,
    check_window,
    escrow_for,
    meter_for_trade,
    supply_tell,
)

MAX_LIMITS_PERIOD = timedelta(days=366)
REASON_DEPOSIT_PAID = "contract_deposit_paid"


class OfferRefused(MarketError):
    """The seller's offer is outside the buyer's limits; ``violations`` are the codes."""

    def __init__(self, violations: tuple[str, ...]) -> None:
        self.violations = violations
        super().__init__("outside the buyer's limits: " + "; ".join(VIOLATION_TEXT[code] for code in violations))


def _check_period(grid: Grid, start: object, end: object, now: datetime) -> None:
    if not isinstance(start, datetime) or not isinstance(end, datetime) or start.tzinfo is None or end.tzinfo is None:
        raise MarketError("the sale period's start and end must be times with a time zone")
    for moment in (start, end):
        if not is_aligned(moment, grid.interval_s):
            raise MarketError(f"{format_utc(moment)} is not on the grid's {grid.interval_s // 60}-minute boundaries")
    if end <= start or end <= now:
        raise MarketError("the sale period must end after it starts, and in the future")
    if end - start > MAX_LIMITS_PERIOD:
        raise MarketError(f"a sale period may last at most {MAX_LIMITS_PERIOD.days} days")


def limits_publish(
    buyer,
    buyer_meter: Meter,
    *,
    period_start: datetime,
    period_end: datetime,
    max_price_uk_per_kwh: int,
    min_payment_uk: int,
    max_payment_uk: int,
    max_deposit_uk: int,
    now: datetime,
    v_min_dv: int = DEFAULT_V_MIN_DV,
    v_max_dv: int = DEFAULT_V_MAX_DV,
    tolerance_bp: int = DEFAULT_TOLERANCE_BP,
) -> BuyerLimit:
    """Publish standing limits for the buyer's own consuming meter: the sale
    period (grid boundaries), the most they pay per kWh (µk), the smallest and
    largest payment per interval (µk), the largest initial deposit (µk), the
    voltage band (dV) and the dual-metering tolerance (basis points). One set
    of active limits per meter. Raises ``MarketError``; nothing is written then.
    """
    check_trader(buyer)
    meter = meter_for_trade(buyer, buyer_meter, selling=False)
    grid = Grid.objects.get(pk=meter.grid_id)
    now = ensure_utc(now)
    _check_period(grid, period_start, period_end, now)
    check_int("max_price_uk_per_kwh", max_price_uk_per_kwh, minimum=1, maximum=MAX_PRICE_UK_PER_KWH)
    check_int("min_payment_uk", min_payment_uk, maximum=MAX_AMOUNT_UK)
    check_int("max_payment_uk", max_payment_uk, minimum=1, maximum=MAX_AMOUNT_UK)
    if min_payment_uk > max_payment_uk:
        raise MarketError("the minimum payment cannot be above the maximum payment")
    check_int("max_deposit_uk", max_deposit_uk, maximum=MAX_AMOUNT_UK)
    check_band(v_min_dv, v_max_dv)
    check_int("tolerance_bp", tolerance_bp, maximum=10_000)
    taken = MarketError(f"meter {meter.public_id} already has active limits: withdraw them first")
    if BuyerLimit.objects.filter(buyer_meter=meter, active=True).exists():
        raise taken
    try:
        with transaction.atomic():
            return BuyerLimit.objects.create(
                grid=grid, buyer=buyer, buyer_meter=meter, period_start=period_start, period_end=period_end,
                max_price_uk_per_kwh=max_price_uk_per_kwh, min_payment_uk=min_payment_uk,
                max_payment_uk=max_payment_uk, max_deposit_uk=max_deposit_uk, v_min_dv=v_min_dv, v_max_dv=v_max_dv,
                tolerance_bp=tolerance_bp, created_at=now,
            )  # fmt: skip
    except IntegrityError:  # published twice at once: the unique active-limits constraint keeps one
        raise taken from None


def limits_withdraw(buyer, limit_id: object, now: datetime) -> BuyerLimit:
    """Withdraw one's limits: no new offer is accepted under them (contracts
    already made run on)."""
    if type(limit_id) is not int:
        raise MarketError("no such limits")
    with transaction.atomic():
        limit = BuyerLimit.objects.select_for_update().filter(pk=limit_id, buyer_id=getattr(buyer, "pk", None)).first()
        if limit is None:
            raise MarketError("no such limits of yours")
        if not limit.active:
            raise MarketError("these limits were already withdrawn")
        limit.active, limit.withdrawn_at = False, ensure_utc(now)
        limit.save(update_fields=["active", "withdrawn_at"])
    return limit


def _limits_of(limit: BuyerLimit) -> BuyerLimits:
    return BuyerLimits(
        period_start=limit.period_start,
        period_end=limit.period_end,
        max_price_uk_per_kwh=limit.max_price_uk_per_kwh,
        min_payment_uk=limit.min_payment_uk,
        max_payment_uk=limit.max_payment_uk,
        max_deposit_uk=limit.max_deposit_uk,
        v_min_dv=limit.v_min_dv,
        v_max_dv=limit.v_max_dv,
    )


def _check_terms(terms: SellerTerms) -> None:
    check_int("price_uk_per_kwh", terms.price_uk_per_kwh, minimum=1, maximum=MAX_PRICE_UK_PER_KWH)
    check_int("wh_per_interval", terms.wh_per_interval, minimum=1, maximum=MAX_ENERGY_WH)
    check_int("deposit_uk", terms.deposit_uk, maximum=MAX_AMOUNT_UK)
    check_band(terms.v_min_dv, terms.v_max_dv)
    if terms.payment_uk < 1:
        raise MarketError("one interval's delivery must be worth at least 1 µk")
    if terms.deposit_uk < terms.payment_uk:
        raise MarketError(
            f"the deposit must cover at least one interval's payment ({terms.payment_uk} µk): "
            "delivery is paid one interval ahead"
        )


def bilateral_offer(
    seller,
    seller_meter: Meter,
    limit_id: object,
    *,
    price_uk_per_kwh: int,
    wh_per_interval: int,
    delivery_start: datetime,
    delivery_end: datetime,
    deposit_uk: int,
    now: datetime,
    v_min_dv: int | None = None,
    v_max_dv: int | None = None,
) -> Contract:
    """Offer the buyer behind ``limit_id`` ``wh_per_interval`` Wh each interval
    of ``[delivery_start, delivery_end)`` at ``price_uk_per_kwh``, for an
    initial ``deposit_uk``, within a voltage band (default: the buyer's).

    Inside all the limits: accepted at once, as a contract. Its deposit is
    taken from the buyer's wallet if it holds enough (the contract is then
    active and the buyer's meter told ``connect``); otherwise it awaits the
    buyer's ``deposit_pay``. Outside any limit: ``OfferRefused`` naming every
    broken one. Raises ``MarketError``; nothing is written then.
    """
    check_trader(seller)
    now = ensure_utc(now)
    limit = BuyerLimit.objects.select_related("grid", "buyer").filter(pk=limit_id, active=True).first() \
        if type(limit_id) is int else None  # fmt: skip
    if limit is None:
        raise MarketError("no such active limits")
    if limit.buyer_id == seller.pk:
        raise MarketError("you cannot sell to yourself")
    meter = meter_for_trade(seller, seller_meter, selling=True, grid=limit.grid)
    band = (limit.v_min_dv if v_min_dv is None else v_min_dv, limit.v_max_dv if v_max_dv is None else v_max_dv)
    terms = SellerTerms(delivery_start, delivery_end, price_uk_per_kwh, wh_per_interval, deposit_uk, *band)
    _check_terms(terms)
    check_window(limit.grid, delivery_start, delivery_end, now)
    if violations := limits_violations(_limits_of(limit), terms):
        raise OfferRefused(violations)
    with transaction.atomic():
        # Under the limits' lock: a withdrawal or another seller's offer a
        # moment ago is seen here (one open contract per set of limits).
        if not BuyerLimit.objects.select_for_update().get(pk=limit.pk).active:
            raise MarketError("no such active limits")
        if limit.contracts.filter(status__in=OPEN_CONTRACT_STATUSES).exists():
            raise MarketError("the buyer already has an open contract under these limits")
        contract = _contract_create(limit, meter, terms, now)
        try:
            with transaction.atomic():
                contract = deposit_pay(limit.buyer, contract.pk, now)
        except MarketError:
            pass  # the buyer's wallet cannot pay it yet: the contract awaits the deposit
    return contract


def _contract_create(limit: BuyerLimit, seller_meter: Meter, terms: SellerTerms, now: datetime) -> Contract:
    intervals = int((terms.delivery_end - terms.delivery_start).total_seconds()) // limit.grid.interval_s
    contract = Contract.objects.create(
        grid=limit.grid,
        kind=ContractKind.BILATERAL,
        seller=seller_meter.owner,
        seller_meter=seller_meter,
        buyer_id=limit.buyer_id,
        buyer_meter_id=limit.buyer_meter_id,
        price_uk_per_kwh=terms.price_uk_per_kwh,
        energy_wh=terms.wh_per_interval * intervals,
        wh_per_interval=terms.wh_per_interval,
        delivery_start=terms.delivery_start,
        delivery_end=terms.delivery_end,
        deposit_uk=terms.deposit_uk,
        tolerance_bp=limit.tolerance_bp,
        v_min_dv=terms.v_min_dv,
        v_max_dv=terms.v_max_dv,
        status=ContractStatus.AWAITING_DEPOSIT,
        limit=limit,
        created_at=now,
    )
    contract.escrow_account = escrow_for("contract", contract.pk)
    contract.save(update_fields=["escrow_account"])
    return contract


def deposit_pay(buyer, contract_id: object, now: datetime) -> Contract:
    """The buyer pays a contract's initial deposit from their wallet into its
    escrow; the contract becomes active and the buyer's meter is told
    ``connect`` (unless an operator holds it). Raises ``MarketError``."""
    check_trader(buyer)
    now = ensure_utc(now)
    if type(contract_id) is not int:
        raise MarketError("no such contract")
    with transaction.atomic():
        contract = Contract.objects.select_for_update().filter(pk=contract_id, buyer_id=buyer.pk).first()
        if contract is None:
            raise MarketError("no such contract of yours")
        if contract.status != ContractStatus.AWAITING_DEPOSIT:
            raise MarketError(f"contract {contract.pk} is {contract.get_status_display().lower()}: no deposit is due")
        if contract.delivery_end <= now:
            raise MarketError(f"contract {contract.pk}'s delivery window is over")
        wallet = wallet_ensure(buyer)
        legs = [(wallet.pk, -contract.deposit_uk), (contract.escrow_account_id, contract.deposit_uk)]
        try:
            transaction_post(f"contract:{contract.pk}:deposit", "market_deposit", legs, floors_uk={wallet.pk: 0})
        except InsufficientFunds as exc:
            raise MarketError(f"your wallet cannot pay the deposit of {contract.deposit_uk} µk ({exc})") from exc
        contract.status, contract.activated_at = ContractStatus.ACTIVE, now
        contract.save(update_fields=["status", "activated_at"])
        supply_tell(contract.buyer_meter, "connect", REASON_DEPOSIT_PAID, now)
    return contract
