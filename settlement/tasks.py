"""Celery tasks of settlement: the beat runs ``settle_due`` every minute."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from meters.models import Grid
from meters.tasks import decide_meters
from utility import clock

from .models import SettlementLine
from .services import grid_settle_due

RETRY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, ConnectionError, TimeoutError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": 10,
}


@shared_task(**RETRY)
def settle_due() -> int:
    """Fan out: one ``settle_grid_due`` per grid (grids settle independently)."""
    grid_ids = list(Grid.objects.values_list("pk", flat=True))
    for grid_id in grid_ids:
        settle_grid_due.delay(grid_id)
    return len(grid_ids)


@shared_task(**RETRY)
def settle_grid_due(grid_id: int) -> int:
    """Settle every due interval of one grid; a repeated or concurrent run is a
    no-op (``settlement_close`` claims each interval once). Then decide."""
    settled = [closed.run.pk for closed in grid_settle_due(grid_id, clock.now()) if closed.settled_now]
    for run_id in settled:
        decide_after_settlement.delay(run_id)
    return len(settled)


@shared_task(**RETRY)
def decide_after_settlement(run_id: int) -> int:
    """Decisions for every meter a settlement touched."""
    meter_ids = list(SettlementLine.objects.filter(run_id=run_id).values_list("meter_id", flat=True))
    return decide_meters.run(meter_ids)
