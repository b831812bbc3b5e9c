"""The Celery application. Tasks live in each app's ``tasks.py``.

With ``CELERY_BROKER_URL`` set, ``celery -A utility worker`` runs the tasks and
``celery -A utility beat`` sends ``CELERY_BEAT_SCHEDULE`` (docs/operations.md).
Without it (the embedded default) tasks run in-process when called, and
``beat_embedded_start`` stands in for the beat: a daemon thread that calls
each scheduled task on its period, for a single-process demo.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "utility.settings")

app = Celery("utility")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


def _beat_tick(schedule: dict[str, dict], last_run: dict[str, float], now_s: float) -> list[str]:
    """Run every entry whose period has elapsed since it last ran; return their names."""
    from django.db import close_old_connections

    ran = []
    for name, entry in schedule.items():
        period_s = float(entry["schedule"])
        if now_s - last_run.get(name, float("-inf")) < period_s:
            continue
        last_run[name] = now_s
        try:
            app.tasks[entry["task"]].delay(*entry.get("args", ()), **entry.get("kwargs", {}))
            ran.append(name)
        except Exception:  # one failing entry must not stop the others
            logger.exception("embedded beat: %s failed", name)
        finally:
            close_old_connections()
    return ran


def beat_embedded_start(stop: threading.Event | None = None, tick_s: float = 1.0) -> threading.Thread:
    """Run ``CELERY_BEAT_SCHEDULE`` in a daemon thread of this process (eager
    mode only: with a broker, run ``celery -A utility beat`` instead). Every
    entry runs once at start, then on its period (seconds), until ``stop`` is set.
    """
    from django.conf import settings

    if not app.conf.task_always_eager:
        raise RuntimeError("CELERY_BROKER_URL is set: run `celery -A utility beat` instead of the embedded beat")
    app.loader.import_default_modules()
    stop = stop or threading.Event()
    schedule = {name: dict(entry) for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
    last_run: dict[str, float] = {}

    def loop() -> None:
        from django.db import connection

        try:
            while not stop.is_set():
                _beat_tick(schedule, last_run, time.monotonic())
                stop.wait(tick_s)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name="embedded-beat", daemon=True)
    thread.start()
    return thread
