"""The credit grace and the market's missed-payment cut against the prepaid rules.

Pure rules first (no database), then the same through settlement, funding
and the market's ``supply_tell`` on the real database.
"""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.services.common import supply_tell
from meters.funding import meter_fund
from meters.models import Meter, MeterDecision
from meters.prepaid import (
    CONNECT,
    DISCONNECT,
    REASON_EXHAUSTED,
    REASON_FUNDED,
    REASON_GRACE,
    REASON_LOW,
    REASON_RESTORED,
    SupplyDecision,
    SupplyInputs,
    average_needed,
    overdrawn_since_next,
    supply_decide,
)
from meters.supply import meter_is_held, meter_is_held_by_operator, meters_decide
from meters.tests.factories import T0, grid_make, meter_issue, user_make
from meters.tests.test_supply import credit, memory, states, wallet_fill  # noqa: F401 (fixture)

K = 1_000_000
HOUR_S = 3600


def grace_inputs(balance_uk, *, overdrawn_s=None, grace_s=2 * HOUR_S, state=CONNECT, grace_warned=False):
    return SupplyInputs(
        balance_uk, 5 * K, K, state, False, credit_grace_s=grace_s, overdrawn_s=overdrawn_s, grace_warned=grace_warned
    )


def test_past_the_limit_a_meter_is_warned_through_the_grace_then_cut():
    # Limit 5 k, grace two hours: first seen at -5 k, it keeps supply and is warned once.
    assert supply_decide(grace_inputs(-5 * K)) == SupplyDecision(CONNECT, REASON_GRACE)
    assert supply_decide(grace_inputs(-6 * K, overdrawn_s=HOUR_S, grace_warned=True)) is None
    assert supply_decide(grace_inputs(-6 * K, overdrawn_s=2 * HOUR_S - 1, grace_warned=True)) is None
    assert supply_decide(grace_inputs(-6 * K, overdrawn_s=2 * HOUR_S, grace_warned=True)) == SupplyDecision(
        DISCONNECT, REASON_EXHAUSTED
    )


def test_no_grace_cuts_at_once_as_before():
    assert supply_decide(grace_inputs(-5 * K, grace_s=0)) == SupplyDecision(DISCONNECT, REASON_EXHAUSTED)


def test_back_above_the_limit_the_grace_warning_is_replaced():
    assert supply_decide(grace_inputs(-4 * K, overdrawn_s=60, grace_warned=True)) == SupplyDecision(CONNECT, REASON_LOW)
    assert supply_decide(grace_inputs(50 * K, overdrawn_s=60, grace_warned=True)) == SupplyDecision(
        CONNECT, REASON_RESTORED
    )


def test_the_grace_mark_is_set_once_and_cleared_above_the_limit():
    now, later = T0, T0 + timedelta(hours=1)
    assert overdrawn_since_next(-5 * K, 5 * K, None, now) == now
    assert overdrawn_since_next(-6 * K, 5 * K, now, later) == now
    assert overdrawn_since_next(-4 * K, 5 * K, now, later) is None
    assert overdrawn_since_next(1, 0, None, now) is None


def test_a_market_cut_stands_until_a_funding_covers_the_threshold():
    cut = SupplyInputs(50 * K, 0, K, DISCONNECT, False, market_cut=True)
    assert supply_decide(cut) is None  # a settlement does not undo it
    assert not average_needed(cut)
    assert supply_decide(cut._replace(funded=True)) == SupplyDecision(CONNECT, REASON_FUNDED)
    assert supply_decide(cut._replace(funded=True, balance_uk=K - 1)) is None


@given(
    balance=st.integers(-(10**12), 10**12),
    limit=st.integers(0, 10**10),
    avg=st.integers(0, 10**9),
    grace=st.integers(0, 10**6),
    elapsed=st.none() | st.integers(0, 10**7),
    state=st.sampled_from([CONNECT, DISCONNECT]),
    warned=st.booleans(),
    grace_warned=st.booleans(),
    market_cut=st.booleans(),
    funded=st.booleans(),
)
def test_grace_rules_hold_for_any_meter(
    balance, limit, avg, grace, elapsed, state, warned, grace_warned, market_cut, funded
):
    inputs = SupplyInputs(
        balance, limit, avg, state, False, 24, warned, False, grace, elapsed, grace_warned, market_cut, funded
    )
    decision = supply_decide(inputs)
    past = balance <= -limit
    if decision is not None and decision.state == DISCONNECT:
        # Cut only past the limit, and only once the grace is over.
        assert past and (elapsed or 0) >= grace and state == CONNECT
    if past and state == CONNECT and (elapsed or 0) >= grace:
        assert decision == SupplyDecision(DISCONNECT, REASON_EXHAUSTED)
    if state == DISCONNECT and decision is not None:
        # Reconnected only above the limit, and a market cut only after a funding.
        assert not past and decision.state == CONNECT and (funded or not market_cut)
    if not average_needed(inputs):
        assert supply_decide(inputs._replace(avg_cost_uk=avg + 12_345)) == decision


# -- through the database ------------------------------------------------------------------


@pytest.mark.django_db
def test_settlement_warns_in_the_grace_and_cuts_after_it(memory, django_capture_on_commit_callbacks):  # noqa: F811
    grid = grid_make("demo", credit_limit_uk=K, credit_grace_s=2 * HOUR_S)
    carlos = meter_issue(grid, "carlos").meter
    credit(carlos, -K, "debt")  # exactly at the limit
    now = T0 + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert meters_decide([carlos.pk], now) == 1
        assert meters_decide([carlos.pk], now + timedelta(hours=1)) == 0  # warned once, still in its grace
        assert meters_decide([carlos.pk], now + timedelta(hours=2)) == 1
    assert states(carlos) == [(1, "connect", "credit_grace"), (2, "disconnect", "funds_exhausted")]
    assert Meter.objects.get(pk=carlos.pk).overdrawn_since == now


@pytest.mark.django_db
def test_back_above_the_limit_in_the_grace_clears_the_mark(memory, django_capture_on_commit_callbacks):  # noqa: F811
    grid = grid_make("demo", credit_limit_uk=K, credit_grace_s=2 * HOUR_S)
    carlos = meter_issue(grid, "carlos").meter
    credit(carlos, -2 * K, "debt")
    now = T0 + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        meters_decide([carlos.pk], now)
        credit(carlos, 100 * K, "topup")
        meters_decide([carlos.pk], now + timedelta(minutes=5))
    assert states(carlos) == [(1, "connect", "credit_grace"), (2, "connect", "balance_restored")]
    assert Meter.objects.get(pk=carlos.pk).overdrawn_since is None


@pytest.mark.django_db
def test_a_market_cut_is_not_undone_by_settlement_but_by_a_funding(memory, django_capture_on_commit_callbacks):  # noqa: F811
    grid = grid_make("demo")
    danny = meter_issue(grid, "danny", owner=user_make("danny")).meter
    credit(danny, 50 * K, "prepaid")
    now = T0 + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert supply_tell(danny, "disconnect", "contract_payment_missed", now)
        assert meters_decide([danny.pk], now + timedelta(minutes=1)) == 0  # the next settlement's decisions
        payer = user_make("payer")
        wallet_fill(payer, 10 * K)
        meter_fund(payer, danny, K, "r1")  # the eager task decides with funded=True
    assert states(danny) == [(1, "disconnect", "contract_payment_missed"), (2, "connect", "funded")]


@pytest.mark.django_db
def test_a_deposit_does_not_reconnect_a_meter_cut_for_exhausted_funds(memory, django_capture_on_commit_callbacks):  # noqa: F811
    grid = grid_make("demo")
    danny = meter_issue(grid, "danny").meter
    now = T0 + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        meters_decide([danny.pk], now)  # balance 0: cut
        assert meter_is_held(danny) and not meter_is_held_by_operator(danny)
        assert not supply_tell(danny, "connect", "contract_deposit_paid", now)
        credit(danny, 10 * K, "topup")
        meters_decide([danny.pk], now + timedelta(minutes=1))
        assert not meter_is_held(danny)
        assert supply_tell(danny, "connect", "contract_deposit_paid", now + timedelta(minutes=2))
    assert [r for _, _, r in states(danny)] == ["funds_exhausted", "funded", "contract_deposit_paid"]
    assert MeterDecision.objects.get(meter=danny, seq=3).published  # the latest went out
