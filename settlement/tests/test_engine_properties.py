"""Properties of the settlement engine for any grid and any interval (hypothesis).

Each expected value is recomputed independently with ``Fraction`` arithmetic,
so a slip in the engine's integer tricks cannot hide behind itself.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.domain import (
    ALERT_IMPORT_EXCEEDS_EXPORT,
    ALERT_LOSS_HIGH,
    ALERT_NO_EXPORT,
    GridRules,
    IntervalSettlement,
    MeterUsage,
    settle_interval,
)

meter_ids = st.text(alphabet="AB-0129", min_size=1, max_size=4)
# Mostly small readings (ties and leftovers are likely), sometimes a large one.
energy_wh = st.one_of(st.integers(0, 20), st.integers(0, 50_000_000))
usage_lists = st.lists(
    st.builds(MeterUsage, meter_ids, energy_wh, energy_wh), max_size=25, unique_by=lambda usage: usage.meter
)
rules = st.builds(
    GridRules,
    tariff_uk_per_kwh=st.integers(0, 5_000_000),
    fee_fixed_uk=st.one_of(st.just(0), st.integers(0, 100_000_000)),
    fee_bp=st.integers(0, 10_000),
    loss_alert_bp=st.integers(0, 20_000),
)
carries = st.one_of(st.just(0), st.integers(0, 10**12))


def half_up(value: Fraction) -> int:
    """Round a non-negative rational half up (the spec's rounding), independently."""
    return math.floor(value + Fraction(1, 2))


def settle(usages: list[MeterUsage], grid: GridRules, carry_in_uk: int) -> IntervalSettlement:
    return settle_interval(usages, grid, carry_in_uk)


@settings(deadline=None)
@given(usage_lists, rules, carries)
def test_money_is_conserved_to_the_micro_coin(usages, grid, carry_in_uk):
    result = settle(usages, grid, carry_in_uk)

    debits = sum(line.debit_uk for line in result.lines)
    credits = sum(line.credit_uk for line in result.lines)
    assert result.pool_uk == carry_in_uk + debits
    assert credits == result.credited_uk
    assert result.credited_uk + result.fee_uk + result.carry_out_uk == result.pool_uk
    assert all(line.debit_uk >= 0 and line.credit_uk >= 0 for line in result.lines)
    assert 0 <= result.fee_uk <= result.pool_uk
    # The pool carries only when nothing was exported; otherwise it is emptied.
    assert result.carry_out_uk == (result.pool_uk - result.fee_uk if result.export_wh == 0 else 0)


@settings(deadline=None)
@given(usage_lists, rules, carries)
def test_every_figure_matches_the_rules_computed_with_fractions(usages, grid, carry_in_uk):
    result = settle(usages, grid, carry_in_uk)
    by_meter = {line.meter: line for line in result.lines}

    assert [line.meter for line in result.lines] == sorted(usage.meter for usage in usages)
    for usage in usages:
        line = by_meter[usage.meter]
        assert (line.import_wh, line.export_wh) == (usage.import_wh, usage.export_wh)
        assert line.debit_uk == half_up(Fraction(usage.import_wh * grid.tariff_uk_per_kwh, 1000))
        if usage.export_wh == 0:
            assert line.credit_uk == 0
    pool = result.pool_uk
    assert result.fee_uk == min(pool, grid.fee_fixed_uk + half_up(Fraction(pool * grid.fee_bp, 10_000)))
    import_wh = sum(usage.import_wh for usage in usages)
    export_wh = sum(usage.export_wh for usage in usages)
    assert (result.import_wh, result.export_wh, result.loss_wh) == (import_wh, export_wh, export_wh - import_wh)
    if export_wh == 0:
        assert result.loss_bp is None
    else:
        exact_bp = Fraction((export_wh - import_wh) * 10_000, export_wh)
        # Half away from zero for a negative loss (Decimal's ROUND_HALF_UP).
        sign = -1 if exact_bp < 0 else 1
        assert result.loss_bp == sign * half_up(abs(exact_bp))
    expected_alerts = []
    if result.loss_bp is not None and result.loss_bp > grid.loss_alert_bp:
        expected_alerts.append(ALERT_LOSS_HIGH)
    if import_wh > export_wh > 0:
        expected_alerts.append(ALERT_IMPORT_EXCEEDS_EXPORT)
    if import_wh > 0 and export_wh == 0:
        expected_alerts.append(ALERT_NO_EXPORT)
    assert result.alerts == tuple(expected_alerts)


@settings(deadline=None)
@given(usage_lists, rules, carries)
def test_each_credit_is_within_one_micro_coin_of_its_exact_share(usages, grid, carry_in_uk):
    result = settle(usages, grid, carry_in_uk)
    if result.export_wh == 0:
        return
    distributable = result.pool_uk - result.fee_uk
    for line in result.lines:
        exact = Fraction(distributable * line.export_wh, result.export_wh)
        assert math.floor(exact) <= line.credit_uk <= math.ceil(exact)
        assert abs(line.credit_uk - exact) < 1


@settings(deadline=None)
@given(usage_lists, rules, carries)
def test_the_leftover_goes_to_the_largest_remainders_then_the_lower_id(usages, grid, carry_in_uk):
    result = settle(usages, grid, carry_in_uk)
    if result.export_wh == 0:
        return
    distributable = result.pool_uk - result.fee_uk
    bumped, plain = [], []
    for line in result.lines:
        share, remainder = divmod(distributable * line.export_wh, result.export_wh)
        (bumped if line.credit_uk == share + 1 else plain).append((remainder, line.meter))
    # Every bumped line ranks before every line left at its floor share.
    for remainder, meter in bumped:
        assert remainder > 0
        for other_remainder, other_meter in plain:
            assert remainder > other_remainder or (remainder == other_remainder and meter < other_meter)


@settings(deadline=None)
@given(usage_lists, rules, carries, st.randoms(use_true_random=False))
def test_the_order_of_the_readings_does_not_matter(usages, grid, carry_in_uk, random):
    shuffled = list(usages)
    random.shuffle(shuffled)
    assert settle(shuffled, grid, carry_in_uk) == settle(usages, grid, carry_in_uk)


@settings(deadline=None)
@given(usage_lists, rules, carries)
def test_settling_twice_gives_the_same_result(usages, grid, carry_in_uk):
    first = settle(usages, grid, carry_in_uk)
    second = settle(list(usages), grid, carry_in_uk)
    assert first == second
    assert repr(first) == repr(second)


@settings(deadline=None)
@given(usage_lists, rules, carries, st.data())
def test_one_bad_reading_refuses_the_whole_interval(usages, grid, carry_in_uk, data):
    bad = data.draw(
        st.one_of(
            st.builds(MeterUsage, meter_ids, st.integers(max_value=-1), energy_wh),
            st.builds(MeterUsage, meter_ids, energy_wh, st.integers(max_value=-1)),
            st.builds(MeterUsage, meter_ids, st.floats(allow_nan=True), energy_wh),
            st.builds(MeterUsage, meter_ids, energy_wh, st.booleans()),
            st.builds(MeterUsage, st.just(""), energy_wh, energy_wh),
        )
    )
    others = [usage for usage in usages if usage.meter != bad.meter]
    position = data.draw(st.integers(0, len(others)))
    with pytest.raises(ValueError):
        settle([*others[:position], bad, *others[position:]], grid, carry_in_uk)
