"""Prepaid decisions on the real database with the in-memory publisher:
settlement empties a meter and it is cut, funding reconnects it, the low
warning goes out once, exempt meters are never cut, operators force and
release, and the forecast lists who runs out."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from meters.decisions import decision_publish
from meters.decisions_bulk import decisions_publish_bulk, decisions_send_pending_bulk
from meters.funding import meter_fund
from meters.models import Meter, MeterDecision
from meters.mqtt import MqttPublishError, memory_publisher
from meters.prepaid import (
    CONNECT,
    DISCONNECT,
    REASON_LOW,
    REASON_RESTORED,
    SupplyDecision,
    SupplyInputs,
    supply_decide,
)
from meters.protocol import signature_valid
from meters.supply import (
    SupplyError,
    meter_force_state,
    meter_is_held,
    meter_release,
    meters_decide,
    meters_forecast,
    meters_running_out,
)
from meters.tests.factories import HOUR, T0, grid_make, meter_issue, reading_make, user_make
from settlement.services import settlement_close
from utility import clock
from utility.audit.models import OperatorAction
from utility.ledger.models import AccountKind
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, transaction_post, wallet_ensure
from utility.ledger.tests.helpers import run_concurrently

K = 1_000_000  # µk per coin
GRACE = timedelta(minutes=10)


@pytest.fixture
def clock_at():
    """Set the one clock (what the tasks read) to a fixed instant."""

    def at(moment):
        clock.clock_install(lambda: moment)

    yield at
    clock.clock_reset()


@pytest.fixture
def memory(settings):
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    yield memory_publisher()
    memory_publisher().clear()


def credit(meter: Meter, amount_uk: int, key: str) -> None:
    """Put coins on a meter account straight from operator credit."""
    source = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post(key, "test_credit", [(source.pk, -amount_uk), (meter.account_id, amount_uk)])


def wallet_fill(user, amount_uk: int) -> None:
    source = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post(
        f"fill:{user.pk}:{amount_uk}", "test_fill", [(source.pk, -amount_uk), (wallet_ensure(user).pk, amount_uk)]
    )


def settle(grid, start):
    return settlement_close(grid.pk, start, start + HOUR + GRACE)


def decisions_on(memory, meter: Meter) -> list[dict]:
    topic = f"grid/{meter.grid.slug}/meters/{meter.public_id}/decision"
    return [m.json() for m in memory.on_topic(topic)]


def states(meter: Meter) -> list[tuple[int, str, str]]:
    return list(MeterDecision.objects.filter(meter=meter).order_by("seq").values_list("seq", "state", "reason"))


# -- the pure rules added for the warning and the operator's hold ----------------------------


def test_a_warned_meter_is_not_warned_again_and_hears_when_the_balance_is_restored():
    low = SupplyInputs(10 * K, 0, K, CONNECT, exempt=False)
    assert supply_decide(low) == SupplyDecision(CONNECT, REASON_LOW)
    assert supply_decide(SupplyInputs(10 * K, 0, K, CONNECT, exempt=False, warned=True)) is None
    assert supply_decide(SupplyInputs(30 * K, 0, K, CONNECT, exempt=False, warned=True)) == SupplyDecision(
        CONNECT, REASON_RESTORED
    )
    # Running dry after the warning still cuts.
    assert supply_decide(SupplyInputs(0, 0, K, CONNECT, exempt=False, warned=True)).state == DISCONNECT


def test_a_held_meter_is_left_alone_whatever_its_balance():
    assert supply_decide(SupplyInputs(-50 * K, 0, K, CONNECT, exempt=False, held=True)) is None
    assert supply_decide(SupplyInputs(50 * K, 0, K, DISCONNECT, exempt=False, held=True)) is None


# -- settlement and funding drive the decisions --------------------------------------------


@pytest.mark.django_db
def test_settlement_cuts_a_dry_consumer_and_funding_reconnects_it(memory, clock_at, django_capture_on_commit_callbacks):
    clock_at(T0 + HOUR + GRACE)  # the funding's decisions read the clock
    grid = grid_make("demo")
    carlos = meter_issue(grid, "carlos", owner=user_make("carlos"))
    angel = meter_issue(grid, "angel", "producer")
    credit(carlos.meter, 1_500_000, "c1")
    reading_make(carlos.meter, T0, import_wh=2_000)
    reading_make(angel.meter, T0, export_wh=3_000)
    settle(grid, T0)
    with django_capture_on_commit_callbacks(execute=True):
        sent = meters_decide([carlos.meter.pk, angel.meter.pk], T0 + HOUR + GRACE)

    assert sent == 1  # the producer needs nothing said
    [cut] = decisions_on(memory, carlos.meter)
    assert (cut["state"], cut["reason"], cut["balance_uk"], cut["seq"]) == (
        "disconnect",
        "funds_exhausted",
        -500_000,
        1,
    )
    assert signature_valid(carlos.secret, cut)
    assert decisions_on(memory, angel.meter) == []

    # 0.5 k only pays the debt: still off (reconnect needs one interval, 2 k, on top).
    payer = user_make("danny")
    wallet_fill(payer, 10 * K)
    with django_capture_on_commit_callbacks(execute=True):
        funded = meter_fund(payer, carlos.meter, 500_000, "r1")
    assert (funded.debt_paid_uk, funded.meter_balance_uk) == (500_000, 0)
    assert len(decisions_on(memory, carlos.meter)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        meter_fund(payer, carlos.meter, 2 * K, "r2")
    connect = decisions_on(memory, carlos.meter)[-1]
    assert (connect["state"], connect["reason"], connect["balance_uk"], connect["seq"]) == (
        "connect",
        "funded",
        2 * K,
        2,
    )
    assert signature_valid(carlos.secret, connect)
    assert memory.retained["grid/demo/meters/carlos/decision"].json() == connect
    assert states(carlos.meter) == [(1, "disconnect", "funds_exhausted"), (2, "connect", "funded")]
    assert set(MeterDecision.objects.values_list("issued_by", "published")) == {("system", True)}
    assert ledger_problems() == []


@pytest.mark.django_db
def test_low_balance_warns_once_then_restored_then_warns_again(memory, django_capture_on_commit_callbacks):
    grid = grid_make("demo")
    danny = meter_issue(grid, "danny").meter
    credit(danny, 30 * K, "d1")  # 2 kWh an hour at 1 k/kWh: 15 hours, under a day
    for hour in range(3):
        reading_make(danny, T0 + hour * HOUR, import_wh=2_000)
        settle(grid, T0 + hour * HOUR)
        with django_capture_on_commit_callbacks(execute=True):
            meters_decide([danny.pk], T0 + (hour + 1) * HOUR + GRACE)
    assert states(danny) == [(1, "connect", "low_balance")]  # once, not every interval
    assert decisions_on(memory, danny)[0]["balance_uk"] == 28 * K

    credit(danny, 40 * K, "d2")  # 64 k: 32 hours
    with django_capture_on_commit_callbacks(execute=True):
        meters_decide([danny.pk], T0 + 3 * HOUR + GRACE)
    assert states(danny)[-1] == (2, "connect", "balance_restored")

    for hour in range(3, 12):  # 9 more hours of 2 kWh: 46 k, 23 hours left
        reading_make(danny, T0 + hour * HOUR, import_wh=2_000)
        settle(grid, T0 + hour * HOUR)
        with django_capture_on_commit_callbacks(execute=True):
            meters_decide([danny.pk], T0 + (hour + 1) * HOUR + GRACE)
    assert states(danny)[2:] == [(3, "connect", "low_balance")]
    assert account_balance(danny.account_id) == 46 * K


@pytest.mark.django_db
def test_producers_and_never_disconnect_meters_are_never_cut(memory, django_capture_on_commit_callbacks):
    grid = grid_make("demo")
    clinic = meter_issue(grid, "clinic").meter
    light = meter_issue(grid, "light-1", public=True).meter
    Meter.objects.filter(pk__in=[clinic.pk, light.pk]).update(never_disconnect=True)
    bennie = meter_issue(grid, "bennie", "producer").meter
    reading_make(clinic, T0, import_wh=5_000)
    reading_make(light, T0, import_wh=300)
    reading_make(bennie, T0, export_wh=100)
    settle(grid, T0)
    with django_capture_on_commit_callbacks(execute=True):
        assert meters_decide([clinic.pk, light.pk, bennie.pk], T0 + HOUR + GRACE) == 0
    assert account_balance(clinic.account_id) == -5 * K
    assert MeterDecision.objects.count() == 0
    assert memory.messages == []
    assert set(Meter.objects.values_list("supply_state", flat=True)) == {"connect"}

    # A meter marked never-disconnect after it was cut is switched back on.
    dry = meter_issue(grid, "dry").meter
    with django_capture_on_commit_callbacks(execute=True):
        meters_decide([dry.pk], T0 + HOUR + GRACE)
    Meter.objects.filter(pk=dry.pk).update(never_disconnect=True)
    with django_capture_on_commit_callbacks(execute=True):
        meters_decide([dry.pk], T0 + HOUR + GRACE)
    assert states(dry) == [(1, "disconnect", "funds_exhausted"), (2, "connect", "exempt")]
    with pytest.raises(ValueError, match="never_disconnect"):
        decisions_publish_bulk([dry.pk], lambda m: ("disconnect", "funds_exhausted"), now=T0)
    assert states(dry)[-1] == (2, "connect", "exempt")


@pytest.mark.django_db
def test_deciding_again_sends_nothing_new(memory, django_capture_on_commit_callbacks):
    grid = grid_make("demo")
    meters = [meter_issue(grid, f"m-{i}").meter for i in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        assert meters_decide([m.pk for m in meters], T0) == 5
        assert meters_decide([m.pk for m in meters], T0) == 0
        assert meters_decide([m.pk for m in meters] * 2, T0) == 0
    assert len(memory.messages) == 5
    assert MeterDecision.objects.count() == 5


@pytest.mark.django_db
def test_bulk_and_single_decisions_share_seq_payload_and_signature(memory, django_capture_on_commit_callbacks):
    issued = meter_issue(grid_make("demo"), "m-1")
    with django_capture_on_commit_callbacks(execute=True):
        single = decision_publish(issued.meter, "connect", "funded", now=T0)
    with django_capture_on_commit_callbacks(execute=True):
        decisions_publish_bulk([issued.meter.pk], lambda m: ("disconnect", "funds_exhausted"), now=T0 + HOUR)
    bulk = MeterDecision.objects.get(meter=issued.meter, seq=2)
    assert set(bulk.payload) == set(single.payload) == {"state", "reason", "balance_uk", "issued_at", "seq", "sig"}
    assert bulk.payload["issued_at"] == "2026-01-01T01:00:00Z"
    assert signature_valid(issued.secret, bulk.payload)
    assert [m.json()["seq"] for m in memory.messages] == [1, 2]
    assert all(m.qos == 1 and m.retain for m in memory.messages)
    assert MeterDecision.objects.filter(published=True).count() == 2


@pytest.mark.django_db
def test_bulk_refuses_bad_states_and_reasons_and_writes_nothing(memory):
    meter = meter_issue(grid_make("demo"), "m-1").meter
    for said, message in [(("off", "funded"), "state must be"), (("connect", "Bad Reason"), "reason must be")]:
        with pytest.raises(ValueError, match=message):
            decisions_publish_bulk([meter.pk], lambda m, said=said: said, now=T0)
    with pytest.raises(ValueError, match="issued_by"):
        decisions_publish_bulk([meter.pk], lambda m: ("connect", "funded"), issued_by="", now=T0)
    assert MeterDecision.objects.count() == 0
    meter.refresh_from_db()
    assert (meter.decision_seq, meter.supply_state) == (0, "connect")


@pytest.mark.django_db(transaction=True)
def test_concurrent_deciders_cut_each_meter_once(memory):
    grid = grid_make("demo")
    ids = [meter_issue(grid, f"m-{i}").meter.pk for i in range(40)]
    results = run_concurrently([lambda: meters_decide(ids, T0) for _ in range(4)])
    assert sorted(results) == [0, 0, 0, 40]
    assert MeterDecision.objects.count() == 40
    assert set(MeterDecision.objects.values_list("seq", "state")) == {(1, "disconnect")}
    assert len(memory.messages) == 40


# -- the operator's override ------------------------------------------------------------------


@pytest.mark.django_db
def test_operator_forces_a_disconnect_that_holds_until_released(memory, django_capture_on_commit_callbacks):
    grid = grid_make("demo")
    issued = meter_issue(grid, "tampered")
    meter = issued.meter
    credit(meter, 50 * K, "t1")
    with django_capture_on_commit_callbacks(execute=True):
        forced = meter_force_state(meter, "disconnect", "seal broken, inspection on Monday", "olga", T0)
    assert (forced.state, forced.reason, forced.issued_by) == ("disconnect", "operator", "olga")
    assert signature_valid(issued.secret, decisions_on(memory, meter)[-1])
    assert meter_is_held(meter)
    action = OperatorAction.objects.get()
    assert (action.actor, action.action, action.target, action.reason) == (
        "olga", "meter_force_state", "meter:tampered", "seal broken, inspection on Monday",
    )  # fmt: skip
    assert action.detail == {"state": "disconnect", "seq": 1}

    # The automatic rules would reconnect a funded meter; the hold stops them.
    with django_capture_on_commit_callbacks(execute=True):
        assert meters_decide([meter.pk], T0 + HOUR) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert meter_release(meter, "inspected, seal replaced", "olga", T0 + 2 * HOUR) == 1
    assert states(meter) == [(1, "disconnect", "operator"), (2, "connect", "funded")]
    assert MeterDecision.objects.get(seq=2).issued_by == "olga"
    assert not meter_is_held(meter)
    assert list(OperatorAction.objects.order_by("at").values_list("action", flat=True)) == [
        "meter_force_state",
        "meter_release",
    ]
    assert [m.json()["seq"] for m in memory.messages] == [1, 2]


@pytest.mark.django_db
def test_operator_keeps_a_dry_meter_on_and_release_cuts_it(memory, django_capture_on_commit_callbacks):
    meter = meter_issue(grid_make("demo"), "family").meter
    with django_capture_on_commit_callbacks(execute=True):
        meters_decide([meter.pk], T0)
        meter_force_state(meter, "connect", "medical equipment, payment plan agreed", "olga", T0)
        assert meters_decide([meter.pk], T0 + HOUR) == 0
        meter_release(meter, "plan ended", "olga", T0 + 2 * HOUR)
    assert states(meter) == [
        (1, "disconnect", "funds_exhausted"),
        (2, "connect", "operator"),
        (3, "disconnect", "funds_exhausted"),
    ]


@pytest.mark.django_db
def test_a_release_keeping_the_state_still_ends_the_hold(memory, django_capture_on_commit_callbacks):
    meter = meter_issue(grid_make("demo"), "m-1").meter
    credit(meter, 50 * K, "m1")
    with django_capture_on_commit_callbacks(execute=True):
        meter_force_state(meter, "connect", "check", "olga", T0)
        meter_release(meter, "done", "olga", T0)
    assert states(meter)[-1] == (2, "connect", "released")
    assert not meter_is_held(meter)


@pytest.mark.django_db
def test_bad_operator_actions_are_refused_and_write_nothing(memory):
    grid = grid_make("demo")
    clinic = meter_issue(grid, "clinic").meter
    Meter.objects.filter(pk=clinic.pk).update(never_disconnect=True)
    clinic.refresh_from_db()
    other = meter_issue(grid, "other").meter
    cases = [
        (lambda: meter_force_state(clinic, "disconnect", "debt", "olga", T0), "never-disconnect"),
        (lambda: meter_force_state(other, "off", "why", "olga", T0), "state must be"),
        (lambda: meter_force_state(other, "disconnect", "  ", "olga", T0), "reason is required"),
        (lambda: meter_force_state(other, "disconnect", "why", "", T0), "operator's name"),
        (lambda: meter_release(other, "not held", "olga", T0), "not held"),
    ]
    for action, message in cases:
        with pytest.raises(SupplyError, match=message):
            action()
    assert MeterDecision.objects.count() == 0
    assert OperatorAction.objects.count() == 0
    assert memory.messages == []


# -- the forecast -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_forecast_and_the_operators_list_of_meters_running_out():
    grid = grid_make("demo", credit_limit_uk=K)
    carlos, danny, erin, idle = (meter_issue(grid, name).meter for name in ("carlos", "danny", "erin", "idle"))
    angel = meter_issue(grid, "angel", "producer").meter
    credit(carlos, 5 * K, "c")  # + 1 k credit = 6 k, at 2 k/h: 3 h
    credit(danny, 100 * K, "d")  # 101 k at 1.5 k/h: 67 h
    credit(erin, K // 2, "e")  # 1.5 k at 3 k/h: 0 h
    for hour in range(2):
        reading_make(carlos, T0 + hour * HOUR, import_wh=2_000)
        reading_make(danny, T0 + hour * HOUR, import_wh=1_000 + 1_000 * hour)
        reading_make(erin, T0 + hour * HOUR, import_wh=3_000)
        reading_make(angel, T0 + hour * HOUR, export_wh=9_000)
    now = T0 + 2 * HOUR

    forecast = meters_forecast([carlos, danny, idle, angel], now)
    assert (forecast[carlos.pk].avg_cost_uk, forecast[carlos.pk].intervals_left, forecast[carlos.pk].hours_left) == (
        2 * K, 3, 3.0,
    )  # fmt: skip
    assert (forecast[danny.pk].avg_cost_uk, forecast[danny.pk].intervals_left) == (1_500_000, 67)
    assert forecast[idle.pk].hours_left is None and forecast[angel.pk].hours_left is None
    # Integers on the money path (PostgreSQL's SUM is numeric: it must not leak out as Decimal).
    assert {type(f.avg_cost_uk) for f in forecast.values()} == {int}
    assert {type(f.balance_uk) for f in forecast.values()} == {int}

    soon = meters_running_out(grid, 24, now=now)
    assert [(f.public_id, f.seconds_left) for f in soon] == [("erin", 0), ("carlos", 3 * 3600)]
    assert [f.public_id for f in meters_running_out(grid, 100, now=now)] == ["erin", "carlos", "danny"]
    # Readings older than a day of intervals no longer count as recent.
    assert meters_running_out(grid, 24, now=now + 30 * HOUR) == []
    for bad in (0, -1, 1.5, "24"):
        with pytest.raises(SupplyError, match="within_hours"):
            meters_running_out(grid, bad, now=now)


class _CheckingPublisher:
    """A broker stand-in for the pipelined bulk path (no caller transaction,
    chunks of 3): at each publish it looks from its own connection whether
    the decisions are committed and their meters still locked; it refuses
    the topics in ``refuse``."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.seen: list[tuple[str, int, bool, bool]] = []  # (meter, seq, committed, locked)

    def publish_many(self, messages, *, qos: int = 1, retain: bool = False) -> list[bool]:
        from django.db import DatabaseError, connection, transaction

        try:
            for topic, payload in messages:
                public_id, seq = topic.split("/")[3], json.loads(payload)["seq"]
                committed = MeterDecision.objects.filter(meter__public_id=public_id, seq=seq).exists()
                try:
                    with transaction.atomic():
                        Meter.objects.select_for_update(nowait=True).filter(public_id=public_id).exists()
                    locked = False
                except DatabaseError:
                    locked = True
                self.seen.append((public_id, seq, committed, locked))
        finally:
            connection.close()
        return [topic.split("/")[3] not in self.refuse for topic, _ in messages]


@pytest.mark.django_db(transaction=True)
def test_pipelined_bulk_publishes_committed_decisions_under_lock_and_leaves_refused_ones_pending(memory, monkeypatch):
    grid = grid_make("demo")
    ids = [meter_issue(grid, f"m-{i}").meter.pk for i in range(8)]
    broker = _CheckingPublisher(refuse={"m-4", "m-7"})
    monkeypatch.setattr("meters.decisions_bulk.CHUNK", 3)
    monkeypatch.setattr("meters.decisions_bulk.publisher_get", lambda: broker)
    assert meters_decide(ids, T0) == 8
    # Every decision went out once, after its chunk committed, its meter locked.
    assert sorted(broker.seen) == [(f"m-{i}", 1, True, True) for i in range(8)]
    pending = set(MeterDecision.objects.filter(published=False).values_list("meter__public_id", flat=True))
    assert pending == {"m-4", "m-7"}
    # The beat's retry sends just the refused ones, and marks them.
    monkeypatch.undo()
    assert decisions_send_pending_bulk() == 2
    assert {m.topic.split("/")[3] for m in memory.messages} == {"m-4", "m-7"}
    assert not MeterDecision.objects.filter(published=False).exists()

    # A broker that fails outright loses nothing: all stay pending, then go out.
    def broken(messages, **kwargs):
        raise MqttPublishError("broker down")

    monkeypatch.setattr("meters.decisions_bulk.CHUNK", 3)
    monkeypatch.setattr(memory, "publish_many", broken)
    assert meters_decide(ids, T0 + 2 * HOUR) == 0  # nothing new to say: the meters are already cut
    credit_all = [Meter.objects.get(pk=pk) for pk in ids[:5]]
    for meter in credit_all:
        credit(meter, 50 * K, f"c-{meter.pk}")
    assert meters_decide(ids, T0 + 2 * HOUR, funded=True) == 5
    assert MeterDecision.objects.filter(published=False).count() == 5
    monkeypatch.undo()
    memory.clear()
    assert decisions_send_pending_bulk() == 5
    assert sorted(m.json()["seq"] for m in memory.messages) == [2] * 5
