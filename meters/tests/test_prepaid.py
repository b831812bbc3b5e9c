"""The prepaid rules as worked examples (pure, no database)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meters.prepaid import (
    CONNECT,
    DISCONNECT,
    REASON_EXEMPT,
    REASON_EXHAUSTED,
    REASON_FUNDED,
    REASON_LOW,
    SupplyDecision,
    SupplyInputs,
    intervals_left,
    supply_decide,
)

# Carlos uses about 1 kWh an hour at 1 k/kWh: 1,000,000 µk per interval.
HOURLY_UK = 1_000_000


def inputs(balance_uk, state=CONNECT, *, credit_uk=0, avg_uk=HOURLY_UK, exempt=False):
    return SupplyInputs(balance_uk, credit_uk, avg_uk, state, exempt)


def test_a_connected_meter_that_runs_dry_is_disconnected():
    assert supply_decide(inputs(0)) == SupplyDecision(DISCONNECT, REASON_EXHAUSTED)
    assert supply_decide(inputs(-5)) == SupplyDecision(DISCONNECT, REASON_EXHAUSTED)


def test_credit_limit_lets_a_meter_run_into_debt_down_to_the_limit():
    assert supply_decide(inputs(-1_999_999, credit_uk=2_000_000)) == SupplyDecision(CONNECT, REASON_LOW)
    assert supply_decide(inputs(-2_000_000, credit_uk=2_000_000)) == SupplyDecision(DISCONNECT, REASON_EXHAUSTED)


def test_a_disconnected_meter_stays_off_until_it_covers_one_interval():
    assert supply_decide(inputs(1, DISCONNECT)) is None
    assert supply_decide(inputs(HOURLY_UK - 1, DISCONNECT)) is None
    assert supply_decide(inputs(HOURLY_UK, DISCONNECT)) == SupplyDecision(CONNECT, REASON_FUNDED)


def test_a_meter_that_used_nothing_reconnects_on_any_positive_balance():
    assert supply_decide(inputs(0, DISCONNECT, avg_uk=0)) is None
    assert supply_decide(inputs(1, DISCONNECT, avg_uk=0)) == SupplyDecision(CONNECT, REASON_FUNDED)


def test_low_balance_warning_below_24_intervals_left():
    assert supply_decide(inputs(23 * HOURLY_UK)) == SupplyDecision(CONNECT, REASON_LOW)
    assert supply_decide(inputs(24 * HOURLY_UK)) is None


def test_exempt_meters_are_never_cut_and_are_reconnected():
    assert supply_decide(inputs(-(10**9), exempt=True)) is None
    assert supply_decide(inputs(-(10**9), DISCONNECT, exempt=True)) == SupplyDecision(CONNECT, REASON_EXEMPT)


def test_already_disconnected_and_still_dry_says_nothing():
    assert supply_decide(inputs(-3, DISCONNECT)) is None


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown supply state"):
        supply_decide(inputs(5, "maybe"))
    with pytest.raises(ValueError):
        supply_decide(inputs(5, credit_uk=-1))


def test_intervals_left():
    assert intervals_left(2_500_000, 0, HOURLY_UK) == 2
    assert intervals_left(-500_000, 2_000_000, HOURLY_UK) == 1
    assert intervals_left(5, 0, 0) is None


@given(
    balance=st.integers(-(10**12), 10**12),
    credit=st.integers(0, 10**9),
    avg=st.integers(0, 10**9),
    state=st.sampled_from([CONNECT, DISCONNECT]),
    exempt=st.booleans(),
)
def test_the_decision_is_consistent_with_the_balance(balance, credit, avg, state, exempt):
    decision = supply_decide(SupplyInputs(balance, credit, avg, state, exempt))
    final = state if decision is None else decision.state
    if exempt:
        assert final == CONNECT
    elif balance <= -credit:
        assert final == DISCONNECT
    elif state == CONNECT:
        assert final == CONNECT  # never cut while above the limit
    if decision is not None:
        assert decision.state != state or decision.reason == REASON_LOW
