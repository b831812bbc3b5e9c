"""The Celery tasks in the embedded default (eager, in-process): the beat's
``settle_due`` settles every due interval of every grid and the decisions
follow; the tasks are safe to repeat; their retry policy; the beat schedule
and the embedded beat. (Retries on a real worker: ``test_celery_worker``.)"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError

import utility.celery
from meters.models import MeterDecision
from meters.mqtt import memory_publisher
from meters.tasks import decide_meters, send_pending_decisions
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make
from settlement.models import SettlementRun
from settlement.services import grid_settle_due
from settlement.tasks import decide_after_settlement, settle_due, settle_grid_due
from utility import clock
from utility.celery import _beat_tick, beat_embedded_start
from utility.ledger.selectors import account_balance, ledger_problems

GRACE = timedelta(minutes=10)


@pytest.fixture(autouse=True)
def eager_memory_clock(settings):
    assert utility.celery.app.conf.task_always_eager, "the tests run the embedded default: no CELERY_BROKER_URL"
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    clock.clock_install(lambda: T0 + 3 * HOUR + GRACE)  # two hours of each grid are due
    yield memory_publisher()
    clock.clock_reset()
    memory_publisher().clear()


def two_grids():
    north, south = grid_make("north"), grid_make("south")
    for grid in (north, south):
        home = meter_make(grid, f"{grid.slug}-home")
        sun = meter_make(grid, f"{grid.slug}-sun", "producer")
        for hour in range(3):
            reading_make(home, T0 + hour * HOUR, import_wh=1_000)
            reading_make(sun, T0 + hour * HOUR, export_wh=1_500)
    return north, south


@pytest.mark.django_db
def test_settle_due_settles_every_due_interval_of_every_grid_then_decides(django_capture_on_commit_callbacks):
    north, south = two_grids()
    with django_capture_on_commit_callbacks(execute=True):
        assert settle_due.delay().get() == 2
    for grid in (north, south):
        runs = SettlementRun.objects.filter(grid=grid).order_by("interval_start")
        assert list(runs.values_list("interval_start", flat=True)) == [T0, T0 + HOUR, T0 + 2 * HOUR]
        home = grid.meters.get(kind="consumer")
        assert account_balance(home.account_id) == -3_000_000
        # Decided after each settlement: cut after the first, then nothing new.
        assert list(MeterDecision.objects.filter(meter=home).values_list("seq", "state")) == [(1, "disconnect")]
    assert [m.topic for m in memory_publisher().messages] == [
        "grid/north/meters/north-home/decision",
        "grid/south/meters/south-home/decision",
    ]
    assert ledger_problems() == []


@pytest.mark.django_db
def test_running_the_schedule_again_changes_nothing(django_capture_on_commit_callbacks):
    two_grids()
    with django_capture_on_commit_callbacks(execute=True):
        settle_due.delay()
    runs, decisions = SettlementRun.objects.count(), MeterDecision.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        settle_due.delay()
        for grid_id in SettlementRun.objects.values_list("grid_id", flat=True).distinct():
            assert settle_grid_due.delay(grid_id).get() == 0
        for run_id in SettlementRun.objects.values_list("pk", flat=True):
            assert decide_after_settlement.delay(run_id).get() == 0
    assert (SettlementRun.objects.count(), MeterDecision.objects.count()) == (runs, decisions)
    assert len(memory_publisher().messages) == 2


@pytest.mark.django_db
def test_a_redelivered_settle_decides_the_latest_run_again(django_capture_on_commit_callbacks):
    """The worker may die after the settlement committed and before the decide
    was sent on: the redelivery finds nothing to settle but still decides."""
    north, _ = two_grids()
    grid_settle_due(north.pk, clock.now())  # settled, but no decisions were sent
    assert MeterDecision.objects.count() == 0
    settle_grid_due.push_request(delivery_info={"redelivered": True})
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert settle_grid_due.run(north.pk) == 0
    finally:
        settle_grid_due.pop_request()
    assert list(MeterDecision.objects.values_list("meter__public_id", "state")) == [("north-home", "disconnect")]

    # A first delivery that finds nothing to settle decides nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert settle_grid_due.delay(north.pk).get() == 0
    assert MeterDecision.objects.count() == 1


@pytest.mark.parametrize("task", [settle_due, settle_grid_due, decide_after_settlement, decide_meters,
                                  send_pending_decisions])  # fmt: skip
def test_every_task_acks_late_requeues_on_a_lost_worker_and_retries_with_backoff(task):
    assert task.acks_late and task.reject_on_worker_lost
    assert OperationalError in task.autoretry_for
    assert task.retry_backoff and task.max_retries == 10


def test_the_beat_settles_every_minute_and_sends_pending_decisions():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    assert schedule["settle-due"]["task"] == "settlement.tasks.settle_due"
    assert schedule["settle-due"]["schedule"] == 60.0
    assert schedule["decisions-send-pending"]["task"] == "meters.tasks.send_pending_decisions"
    for name in ("settle-due", "decisions-send-pending"):
        assert schedule[name]["task"] in utility.celery.app.tasks
        assert schedule[name]["options"]["expires"] < schedule[name]["schedule"]


def test_the_embedded_beat_runs_each_entry_on_its_period():
    seen = []

    class Recorder:
        def delay(self, *args, **kwargs):
            seen.append((args, kwargs))

    schedule = {"every-minute": {"task": "test.recorder", "schedule": 60.0, "args": (7,)}}
    utility.celery.app.tasks["test.recorder"] = Recorder()
    try:
        last = {}
        assert _beat_tick(schedule, last, 1000.0) == ["every-minute"]
        assert _beat_tick(schedule, last, 1059.0) == []
        assert _beat_tick(schedule, last, 1060.0) == ["every-minute"]
    finally:
        del utility.celery.app.tasks["test.recorder"]
    assert seen == [((7,), {}), ((7,), {})]


@pytest.mark.django_db(transaction=True)
def test_the_embedded_beat_settles_the_demo_by_itself():
    two_grids()
    stop = threading.Event()
    thread = beat_embedded_start(stop, tick_s=0.05)
    try:
        deadline = 60
        for _ in range(deadline * 20):
            if SettlementRun.objects.count() == 6 and MeterDecision.objects.count() == 2:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert SettlementRun.objects.count() == 6
    assert set(MeterDecision.objects.values_list("meter__public_id", "state")) == {
        ("north-home", "disconnect"),
        ("south-home", "disconnect"),
    }
    assert ledger_problems() == []


def test_the_embedded_beat_is_refused_when_a_broker_is_configured():
    conf = utility.celery.app.conf
    conf.task_always_eager = False
    try:
        with pytest.raises(RuntimeError, match="celery -A utility beat"):
            beat_embedded_start()
    finally:
        conf.task_always_eager = True
