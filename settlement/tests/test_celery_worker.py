"""Scheduled settlement on a real Redis with real Celery workers, on the test
database: a due interval is settled exactly once when the task is sent three
times, when two workers race for it, and when the worker settling it is
killed with SIGKILL half-way through (its task is handed out again).

The interval is a whole UTC day with no grace, so exactly one interval
(yesterday) is due whatever the wall clock says: the subprocess workers read
the real clock.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.core.management import call_command
from django.db import OperationalError

from meters.models import Grid, Meter, MeterDecision
from meters.tests.factories import grid_make, meter_make, reading_make
from settlement import tasks
from settlement.models import RunStatus, SettlementLine, SettlementRun
from settlement.tasks import settle_grid_due
from utility import clock
from utility.ledger.models import AccountKind, Transaction
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, transaction_post
from utility.lib.timeutil import interval_floor

from .workers import (
    WorkerProcess,
    backends_waiting_on,
    celery_app,
    celery_app_restore,
    queue_name,
    redis_required,
    row_locked,
    sessions,
    task_log,
    thread_worker,
    wait_until,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

DAY = timedelta(days=1)
SETTLE = "settlement.tasks.settle_grid_due"
DECIDE = "settlement.tasks.decide_after_settlement"
# The seed's hour, as a day: Carlos 3 kWh and Danny 2 kWh in, Angel 3 kWh and
# Bennie 2.5 kWh out, fee 0.01 k: Angel 2.721818 k, Bennie 2.268182 k.
EXPECTED_UK = {"carlos": 7_000_000, "danny": -2_000_000, "angel": 2_721_818, "bennie": 2_268_182}


@pytest.fixture(autouse=True)
def memory_publisher_and_redis(settings):
    redis_required()
    settings.MQTT_PUBLISHER = "memory"


@pytest.fixture
def app():
    app = celery_app(queue_name())
    yield app
    celery_app_restore(app)


def seed_grid() -> tuple[Grid, object]:
    """A grid of daily intervals whose only due one is yesterday, with the
    seed's four meters; Carlos prepaid 10 k, Danny nothing."""
    today = interval_floor(clock.now(), 86_400)
    start = today - DAY
    grid = grid_make("w", now=start, interval_s=86_400, settlement_grace_s=0)
    kinds = [("carlos", "consumer"), ("danny", "consumer"), ("angel", "producer"), ("bennie", "producer")]
    meters = {name: meter_make(grid, name, kind) for name, kind in kinds}
    for name, imp, exp in [("carlos", 3_000, 0), ("danny", 2_000, 0), ("angel", 0, 3_000), ("bennie", 0, 2_500)]:
        reading_make(meters[name], start, import_wh=imp, export_wh=exp)
    credit = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post("prepay:carlos", "test", [(credit.pk, -10_000_000), (meters["carlos"].account_id, 10_000_000)])
    return grid, start


def assert_settled_once(grid: Grid, start) -> None:
    runs = list(SettlementRun.objects.filter(grid=grid).values_list("interval_start", "status"))
    assert runs == [(start, RunStatus.SETTLED)]
    assert Transaction.objects.filter(kind="settlement").count() == 1
    assert SettlementLine.objects.filter(run__grid=grid).count() == 4
    balances = {m.public_id: account_balance(m.account_id) for m in Meter.objects.filter(grid=grid)}
    assert balances == EXPECTED_UK
    assert account_balance(grid.fee_account_id) == 10_000
    assert account_balance(grid.pool_account_id) == 0
    assert ledger_problems() == []
    call_command("ledger_check", stdout=open("/dev/null", "w"))  # noqa: SIM115 - exits non-zero on bad books


def assert_decided_once(grid: Grid) -> None:
    decisions = MeterDecision.objects.filter(meter__grid=grid).values_list("meter__public_id", "seq", "state", "reason")
    assert sorted(decisions) == [("carlos", 1, "connect", "low_balance"), ("danny", 1, "disconnect", "funds_exhausted")]


def test_a_due_interval_sent_three_times_to_a_real_worker_is_settled_once(app):
    grid, start = seed_grid()
    with task_log() as log, thread_worker(app, "solo@cw-test"):
        sent = [settle_grid_due.delay(grid.pk).id for _ in range(3)]
        wait_until(lambda: len(log.of(SETTLE)) == 3 and len(log.of(DECIDE)) == 1, 90, "three settles and one decide")
    assert sorted(task_id for _, _, task_id, _ in log.of(SETTLE)) == sorted(sent)
    assert sorted(retval for *_, retval in log.of(SETTLE)) == [0, 0, 1]
    assert_settled_once(grid, start)
    assert_decided_once(grid)


def test_a_transient_database_error_is_retried_by_the_worker(app, monkeypatch):
    grid, start = seed_grid()
    calls = []
    real = tasks.grid_settle_due

    def flaky(grid_id, now):
        calls.append(grid_id)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(grid_id, now)

    monkeypatch.setattr(tasks, "grid_settle_due", flaky)
    with task_log() as log, thread_worker(app, "retry@cw-test"):
        task_id = settle_grid_due.delay(grid.pk).id
        wait_until(lambda: len(log.of(SETTLE)) == 2 and len(log.of(DECIDE)) == 1, 90, "a retry, then the decide")
    assert calls == [grid.pk, grid.pk]
    first, second = log.of(SETTLE)
    assert first[2] == second[2] == task_id
    assert isinstance(first[3], Retry) and second[3] == 1
    assert_settled_once(grid, start)
    assert_decided_once(grid)


def test_two_workers_racing_for_one_interval_settle_it_once(app, tmp_path):
    grid, start = seed_grid()
    queue = app.conf.task_default_queue
    workers = [WorkerProcess(queue, tmp_path / f"{name}.log", name=name) for name in ("one", "two")]
    try:
        # Hold the grid row so both workers reach the settlement and queue on
        # its lock; releasing it lets them race for the claim.
        with row_locked("meters_grid", grid.pk) as release:
            for worker in workers:
                worker.wait_ready()
            sent = [settle_grid_due.delay(grid.pk).id for _ in workers]
            wait_until(lambda: backends_waiting_on("meters_grid") == 2, 60, lambda: f"both blocked: {sessions()}")
            release()
            wait_until(lambda: sum(len(w.results(SETTLE)) for w in workers) == 2, 90, "both settles finished")
        wait_until(lambda: MeterDecision.objects.filter(meter__grid=grid).count() == 2, 60, "the decisions")
    finally:
        for worker in workers:
            worker.stop()
    results = [worker.results(SETTLE) for worker in workers]
    assert [len(r) for r in results] == [1, 1]  # one task each: a real race
    assert sorted(task_id for r in results for task_id, _ in r) == sorted(sent)
    assert sorted(retval for r in results for _, retval in r) == ["0", "1"]
    assert_settled_once(grid, start)
    assert_decided_once(grid)


def _blocked_mid_settlement(grid: Grid, worker: WorkerProcess) -> None:
    """Wait until ``worker`` is inside the settlement transaction (run claimed,
    readings claimed) and blocked on the pool account row the test holds."""
    worker.wait_ready()
    wait_until(
        lambda: backends_waiting_on("ledger_account") == 1, 90, f"worker blocked mid-settlement:\n{worker.log()}"
    )


def test_a_worker_killed_mid_settlement_is_replaced_and_the_interval_settled_once(app, tmp_path):
    grid, start = seed_grid()
    with row_locked("ledger_account", grid.pool_account_id) as release:
        first = WorkerProcess(app.conf.task_default_queue, tmp_path / "first.log", name="first")
        try:
            task_id = settle_grid_due.delay(grid.pk).id
            _blocked_mid_settlement(grid, first)
        finally:
            first.kill()
        release()
    # The killed worker's session is gone and its transaction rolled back.
    wait_until(lambda: backends_waiting_on("ledger_account") == 0, 60, "the killed worker's session ended")
    assert SettlementRun.objects.filter(grid=grid, status=RunStatus.SETTLED).count() == 0
    assert Transaction.objects.filter(kind="settlement").count() == 0

    second = WorkerProcess(app.conf.task_default_queue, tmp_path / "second.log", name="second")
    try:
        second.wait_ready()
        wait_until(lambda: MeterDecision.objects.filter(meter__grid=grid).count() == 2, 120,
                   f"the redelivered task settled and decided:\n{second.log()}")  # fmt: skip
    finally:
        second.stop()
    assert f"settle_grid_due[{task_id}] succeeded" in second.log()  # the same message, handed out again
    assert_settled_once(grid, start)
    assert_decided_once(grid)


def test_a_pool_process_killed_mid_settlement_has_its_task_requeued(app, tmp_path):
    grid, start = seed_grid()
    worker = WorkerProcess(app.conf.task_default_queue, tmp_path / "prefork.log", pool="prefork", name="prefork")
    try:
        with row_locked("ledger_account", grid.pool_account_id) as release:
            task_id = settle_grid_due.delay(grid.pk).id
            _blocked_mid_settlement(grid, worker)
            [child] = worker.children()
            os.kill(child, signal.SIGKILL)
            wait_until(
                lambda: "WorkerLostError" in worker.log(), 60, f"the worker saw its pool process die:\n{worker.log()}"
            )
            release()
        wait_until(lambda: MeterDecision.objects.filter(meter__grid=grid).count() == 2, 120,
                   f"the requeued task settled and decided:\n{worker.log()}")  # fmt: skip
    finally:
        worker.stop()
    log = worker.log()
    assert f"settle_grid_due[{task_id}] succeeded" in log
    assert log.count(f"Task settlement.tasks.settle_grid_due[{task_id}] received") == 2, log
    assert_settled_once(grid, start)
    assert_decided_once(grid)
