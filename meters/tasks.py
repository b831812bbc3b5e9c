"""Celery tasks of the meters app: ids in, one service call, retries here."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from utility import clock

from .supply import meters_decide


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=10,
)
def decide_meters(meter_ids: list[int]) -> int:
    """Send the decisions these meters need now (safe to run twice: an
    unchanged state sends nothing, and a repeated warning is suppressed)."""
    return len(meters_decide(meter_ids, clock.now()))
