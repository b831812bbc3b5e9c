"""Real Celery workers on a real Redis for the tests: in-thread workers
(``celery.contrib.testing.worker.start_worker``) and ``celery -A utility
worker`` subprocesses, all on the test database, each test on its own queue.

Redis is ``CW_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/7``). A Redis
that does not answer fails the test loudly, never skips it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("CW_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
# A killed worker's task is handed out again after this many seconds (production: an hour).
VISIBILITY_TIMEOUT_S = 3
TRANSPORT_OPTIONS = {"visibility_timeout": VISIBILITY_TIMEOUT_S, "unacked_restore_interval": 1}


def redis_required() -> None:
    """Fail (never skip) when the test Redis does not answer."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}): the worker tests need a real Redis", False)


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str | Callable[[], str], interval_s: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail saying
    ``what`` (a text, or a function making one) did not happen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout_s} s: {what() if callable(what) else what}")
        time.sleep(interval_s)


def queue_name() -> str:
    """A queue of one's own: other test runs may share the Redis database."""
    return f"cw-test-{uuid.uuid4().hex[:12]}"


def celery_app(queue: str) -> Celery:
    """A Celery app configured like ``utility.celery.app`` but on the test
    Redis, not eager, and sending to ``queue``; it becomes the current and
    default app (so tasks that enqueue others use it) until ``celery_app_restore``."""
    app = Celery(f"cw-test-{queue}", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(
        broker_url=REDIS_URL,
        task_always_eager=False,
        task_default_queue=queue,
        broker_transport_options=TRANSPORT_OPTIONS,
        worker_hijack_root_logger=False,
        beat_schedule={},
    )
    app.autodiscover_tasks(force=True)
    app.finalize()
    app.set_current()
    app.set_default()
    return app


def celery_app_restore(app: Celery) -> None:
    import utility.celery

    app.close()
    utility.celery.app.set_current()
    utility.celery.app.set_default()


@dataclass
class TaskLog:
    """What in-thread workers ran: ``(worker thread, task name, task id, retval)``,
    thread-safe. Each in-thread worker (solo pool) runs its tasks in its own thread."""

    runs: list[tuple[str, str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, sender=None, task_id=None, task=None, retval=None, **kwargs) -> None:
        with self.lock:
            self.runs.append((threading.current_thread().name, task.name, task_id, retval))

    def of(self, name: str) -> list[tuple[str, str, str, Any]]:
        with self.lock:
            return [run for run in self.runs if run[1] == name]


@contextlib.contextmanager
def task_log() -> Iterator[TaskLog]:
    log = TaskLog()
    task_postrun.connect(log.record, weak=False)
    try:
        yield log
    finally:
        task_postrun.disconnect(log.record)


@contextlib.contextmanager
def thread_worker(app: Celery, hostname: str) -> Iterator[Any]:
    """One in-thread worker (solo pool) consuming the app's queue."""
    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=60, hostname=hostname
    ) as worker:
        yield worker


def database_url_of_tests() -> str:
    """The URL of the database the tests run on (``test_<name>``), for subprocesses."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class WorkerProcess:
    """``celery -A utility worker`` in its own session (so it can be killed as
    a whole), on the test database and ``queue``, logging to ``log_file``."""

    def __init__(self, queue: str, log_file: Path, *, pool: str = "solo", name: str = "proc") -> None:
        self.log_file = log_file
        env = {
            **os.environ,
            "DATABASE_URL": database_url_of_tests(),
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_QUEUE": queue,
            "CELERY_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
            "CELERY_RESTORE_INTERVAL_S": "1",
            "MQTT_PUBLISHER": "memory",
            "CELERY_SKIP_CHECKS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable, "-m", "celery", "-A", "utility", "worker", "-P", pool, "-c", "1", "-l", "INFO",
            "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with open(log_file, "ab") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def results(self, task_name: str) -> list[tuple[str, str]]:
        """``(task id, return value as logged)`` of each ``task_name`` run that succeeded."""
        pattern = rf"Task {re.escape(task_name)}\[([0-9a-f-]+)\] succeeded in [0-9.]+s: (\S+)"
        return re.findall(pattern, self.log())

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            return " ready." in self.log()

        wait_until(ready, timeout_s, f"the worker did not report ready:\n{self.log()[-3000:]}")

    def children(self) -> list[int]:
        """Pids of the worker's pool processes."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                        found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool) at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # any pool process left behind


def backends_waiting_on(table: str) -> int:
    """How many database sessions are blocked waiting for a row or table lock on ``table``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.wait_event_type = 'Lock' AND a.query ILIKE %s "
            "AND a.datname = current_database()",
            [f"%{table}%"],
        )
        return cursor.fetchone()[0]


def sessions() -> list[tuple]:
    """The test database's other sessions: (pid, state, wait event, query), for failure messages."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, left(query, 120) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid"
        )
        return cursor.fetchall()


@contextlib.contextmanager
def row_locked(table: str, row_id: int) -> Iterator[Callable[[], None]]:
    """Hold ``SELECT ... FOR UPDATE`` on one row from a connection of our own;
    yields a function that releases it early (rollback)."""
    import psycopg2

    db = connection.settings_dict
    own = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], password=db.get("PASSWORD") or None,
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
    )  # fmt: skip
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            own.rollback()
            released = True

    try:
        with own.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [row_id])
            assert cursor.fetchone() is not None, f"no row {row_id} in {table}"
        yield release
    finally:
        release()
        own.close()
