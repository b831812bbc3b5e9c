"""The buyer-limit matcher and the auction rule, without a database.

Every limit is tried on both sides of its bound: at the bound (inside) and
one unit past it (outside, naming exactly that limit).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from marketplace.domain import (
    DEPOSIT_HIGH,
    ENDS_LATE,
    PAYMENT_LARGE,
    PAYMENT_SMALL,
    PRICE_HIGH,
    STARTS_EARLY,
    VIOLATION_TEXT,
    VOLTAGE_HIGH,
    VOLTAGE_LOW,
    BuyerLimits,
    SellerTerms,
    StandingBid,
    auction_winner,
    energy_cost_uk,
    limits_accept,
    limits_violations,
    volume_weighted_price,
)

DAY = datetime(2026, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
LIMITS = BuyerLimits(
    period_start=DAY + 8 * HOUR,
    period_end=DAY + 20 * HOUR,
    max_price_uk_per_kwh=900_000,
    min_payment_uk=200_000,
    max_payment_uk=900_000,
    max_deposit_uk=2_000_000,
    v_min_dv=2_070,
    v_max_dv=2_530,
)
# 500 Wh at 0.8 k per kWh: 400,000 µk per interval.
INSIDE = SellerTerms(
    delivery_start=DAY + 10 * HOUR,
    delivery_end=DAY + 14 * HOUR,
    price_uk_per_kwh=800_000,
    wh_per_interval=500,
    deposit_uk=1_000_000,
    v_min_dv=2_100,
    v_max_dv=2_500,
)


def test_an_offer_inside_every_limit_is_accepted():
    assert limits_violations(LIMITS, INSIDE) == ()
    assert limits_accept(LIMITS, INSIDE)


@pytest.mark.parametrize(
    ("at_bound", "past_bound", "code"),
    [
        (dict(delivery_start=DAY + 8 * HOUR), dict(delivery_start=DAY + 8 * HOUR - timedelta(seconds=1)), STARTS_EARLY),
        (dict(delivery_end=DAY + 20 * HOUR), dict(delivery_end=DAY + 20 * HOUR + timedelta(seconds=1)), ENDS_LATE),
        (dict(price_uk_per_kwh=900_000), dict(price_uk_per_kwh=900_001), PRICE_HIGH),
        # payment = round_half_up(Wh × price / 1000): 250 Wh → 200,000 µk; 249 Wh → 199,200 µk
        (dict(wh_per_interval=250), dict(wh_per_interval=249), PAYMENT_SMALL),
        # 1,125 Wh → 900,000 µk; 1,126 Wh → 900,800 µk
        (dict(wh_per_interval=1_125, deposit_uk=2_000_000), dict(wh_per_interval=1_126), PAYMENT_LARGE),
        (dict(deposit_uk=2_000_000), dict(deposit_uk=2_000_001), DEPOSIT_HIGH),
        (dict(v_min_dv=2_070), dict(v_min_dv=2_069), VOLTAGE_LOW),
        (dict(v_max_dv=2_530), dict(v_max_dv=2_531), VOLTAGE_HIGH),
    ],
)
def test_each_limit_holds_at_its_bound_and_refuses_past_it(at_bound, past_bound, code):
    assert limits_violations(LIMITS, replace(INSIDE, **at_bound)) == ()
    assert limits_violations(LIMITS, replace(INSIDE, **past_bound)) == (code,)
    assert not limits_accept(LIMITS, replace(INSIDE, **past_bound))
    assert VIOLATION_TEXT[code]


def test_the_payment_bounds_use_one_full_interval_at_the_offered_price():
    # Near the minimum from the price side too: 500 Wh at 0.4 k = 200,000 µk;
    # at 399,999 µk/kWh it is 199,999.5 → 200,000 (half up).
    assert limits_violations(LIMITS, replace(INSIDE, price_uk_per_kwh=400_000)) == ()
    assert limits_violations(LIMITS, replace(INSIDE, price_uk_per_kwh=399_999)) == ()
    assert limits_violations(LIMITS, replace(INSIDE, price_uk_per_kwh=399_998)) == (PAYMENT_SMALL,)


def test_every_broken_limit_is_named():
    terrible = SellerTerms(DAY, DAY + 30 * HOUR, 2_000_000, 100, 5_000_000, 1_900, 2_700)
    assert set(limits_violations(LIMITS, terrible)) == {
        STARTS_EARLY,
        ENDS_LATE,
        PRICE_HIGH,
        DEPOSIT_HIGH,
        VOLTAGE_LOW,
        VOLTAGE_HIGH,
    }  # fmt: skip  (100 Wh at 2 k = 200,000 µk: the payment bounds hold)


def test_the_highest_bid_wins_and_ties_go_to_the_earliest():
    bids = [StandingBid(10, 500, order=3), StandingBid(11, 700, order=5), StandingBid(12, 700, order=4)]
    assert auction_winner(bids, None) == StandingBid(12, 700, 4)
    assert auction_winner(reversed(bids), None) == StandingBid(12, 700, 4)  # input order does not matter


def test_the_reserve_is_enough_and_below_it_nothing_sells():
    bids = [StandingBid(1, 700, 1)]
    assert auction_winner(bids, 700) == bids[0]
    assert auction_winner(bids, 701) is None
    assert auction_winner([], None) is None


def test_energy_cost_rounds_half_up_and_refuses_negatives():
    assert energy_cost_uk(1, 1_500) == 2  # 1.5 µk
    assert energy_cost_uk(1, 1_499) == 1
    assert energy_cost_uk(2_000, 800_000) == 1_600_000
    with pytest.raises(ValueError):
        energy_cost_uk(-1, 5)


def test_the_market_price_is_volume_weighted():
    assert volume_weighted_price([(800_000, 1_000), (1_100_000, 3_000)]) == 1_025_000
    assert volume_weighted_price([(3, 1), (4, 1)]) == 4  # 3.5 rounds half up
    assert volume_weighted_price([(900_000, 0)]) is None
    assert volume_weighted_price([]) is None
