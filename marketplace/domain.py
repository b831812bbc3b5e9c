"""The market's rules over plain data: the buyer-limit matcher and the auction.

Pure: no Django, no clock, no settings. Units: money in integer µk, prices in
µk per kWh, energy in Wh, voltages in decivolts (2300 dV = 230 V), times
UTC-aware and compared, never read. No fee appears here: the utility's fee is
applied once, by settlement (a fee taken while matching would be taken twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# Why a seller's offer is outside a buyer's limits (one code per bound).
STARTS_EARLY = "starts_before_period"
ENDS_LATE = "ends_after_period"
PRICE_HIGH = "price_above_max"
PAYMENT_SMALL = "payment_below_min"
PAYMENT_LARGE = "payment_above_max"
DEPOSIT_HIGH = "deposit_above_max"
VOLTAGE_LOW = "voltage_below_band"
VOLTAGE_HIGH = "voltage_above_band"

VIOLATION_TEXT = {
    STARTS_EARLY: "delivery starts before the buyer's sale period",
    ENDS_LATE: "delivery ends after the buyer's sale period",
    PRICE_HIGH: "the price per kWh is above the buyer's maximum",
    PAYMENT_SMALL: "the payment per interval is below the buyer's minimum",
    PAYMENT_LARGE: "the payment per interval is above the buyer's maximum",
    DEPOSIT_HIGH: "the initial deposit is above the buyer's maximum",
    VOLTAGE_LOW: "the offered voltage band reaches below the buyer's band",
    VOLTAGE_HIGH: "the offered voltage band reaches above the buyer's band",
}


def energy_cost_uk(energy_wh: int, price_uk_per_kwh: int) -> int:
    """``round_half_up(energy_wh * price / 1000)`` µk: the same rounding as
    settlement's ``settlement.domain.contracts.cost_uk`` (a test holds them equal)."""
    if energy_wh < 0 or price_uk_per_kwh < 0:
        raise ValueError("energy and price must not be negative")
    return (2 * energy_wh * price_uk_per_kwh + 1000) // 2000


@dataclass(frozen=True, slots=True)
class BuyerLimits:
    """A buyer's standing limits: a seller's offer inside all of them is accepted."""

    period_start: datetime
    period_end: datetime
    max_price_uk_per_kwh: int
    min_payment_uk: int
    max_payment_uk: int
    max_deposit_uk: int
    v_min_dv: int
    v_max_dv: int


@dataclass(frozen=True, slots=True)
class SellerTerms:
    """A seller's offer: ``wh_per_interval`` at ``price_uk_per_kwh`` for each
    interval of ``[delivery_start, delivery_end)``, an initial deposit, and
    the voltage band the seller promises at the buyer's meter."""

    delivery_start: datetime
    delivery_end: datetime
    price_uk_per_kwh: int
    wh_per_interval: int
    deposit_uk: int
    v_min_dv: int
    v_max_dv: int

    @property
    def payment_uk(self) -> int:
        """The payment for one full interval's delivery (µk)."""
        return energy_cost_uk(self.wh_per_interval, self.price_uk_per_kwh)


def limits_violations(limits: BuyerLimits, terms: SellerTerms) -> tuple[str, ...]:
    """Every limit ``terms`` break, as codes (``VIOLATION_TEXT`` says them in
    words); empty when the offer is inside all of them. Bounds are inclusive:
    a price equal to the maximum, a deposit equal to the maximum, delivery
    from exactly the period's start to exactly its end are all inside."""
    checks = (
        (terms.delivery_start < limits.period_start, STARTS_EARLY),
        (terms.delivery_end > limits.period_end, ENDS_LATE),
        (terms.price_uk_per_kwh > limits.max_price_uk_per_kwh, PRICE_HIGH),
        (terms.payment_uk < limits.min_payment_uk, PAYMENT_SMALL),
        (terms.payment_uk > limits.max_payment_uk, PAYMENT_LARGE),
        (terms.deposit_uk > limits.max_deposit_uk, DEPOSIT_HIGH),
        (terms.v_min_dv < limits.v_min_dv, VOLTAGE_LOW),
        (terms.v_max_dv > limits.v_max_dv, VOLTAGE_HIGH),
    )
    return tuple(code for broken, code in checks if broken)


def limits_accept(limits: BuyerLimits, terms: SellerTerms) -> bool:
    """True when the seller's offer is inside every one of the buyer's limits."""
    return not limits_violations(limits, terms)


@dataclass(frozen=True, slots=True)
class StandingBid:
    """A bid still in the running: ``order`` is when it was placed (lower: earlier)."""

    bid_id: int
    price_uk_per_kwh: int
    order: int


def auction_winner(bids: Iterable[StandingBid], reserve_uk_per_kwh: int | None) -> StandingBid | None:
    """The highest bid, ties to the earliest; None when there is none or the
    best is below the reserve (the reserve itself is enough)."""
    best = min(bids, key=lambda bid: (-bid.price_uk_per_kwh, bid.order), default=None)
    if best is None or (reserve_uk_per_kwh is not None and best.price_uk_per_kwh < reserve_uk_per_kwh):
        return None
    return best


def volume_weighted_price(quantities: Iterable[tuple[int, int]]) -> int | None:
    """``Σ price × wh / Σ wh`` rounded half up over ``(price_uk_per_kwh, wh)``
    pairs; None when no energy is traded (the market has no price then)."""
    pairs = [(price, wh) for price, wh in quantities if wh > 0]
    total_wh = sum(wh for _, wh in pairs)
    if total_wh == 0:
        return None
    return (2 * sum(price * wh for price, wh in pairs) + total_wh) // (2 * total_wh)
