"""Celery tasks of the meters app: ids in, one service call, retries here."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from utility import clock

from .decisions_bulk import decisions_send_pending_bulk
from .supply import meters_decide

RETRY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, ConnectionError, TimeoutError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": 10,
}


@shared_task(**RETRY)
def decide_meters(meter_ids: list[int], funded: bool = False) -> int:
    """Send the decisions these meters need now (``funded``: after a funding of
    them); returns how many were sent. Safe to run twice: an unchanged state
    sends nothing and a warning is not repeated."""
    return meters_decide(meter_ids, clock.now(), funded=funded)


@shared_task(**RETRY)
def send_pending_decisions() -> int:
    """Publish decisions a broker outage left unpublished. The beat runs it
    every minute (a no-op when there are none), so a broker still down simply
    fails this run (``MqttPublishError``) and the next minute tries again."""
    return decisions_send_pending_bulk()
