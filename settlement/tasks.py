"""Celery tasks of settlement: the beat runs ``settle_due`` every minute.

Every task takes ids, calls one service, is safe to run twice and is
acknowledged only after it ran (``acks_late``; ``reject_on_worker_lost``
requeues it when its worker process dies), so a settlement interrupted by a
crash is rolled back by PostgreSQL and simply done again by the redelivery
or by the next minute's beat.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from contracts.tasks import mirror_settlement
from meters.models import Grid
from meters.tasks import decide_meters
from utility import clock

from .models import RunStatus, SettlementLine, SettlementRun
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


@shared_task(bind=True, **RETRY)
def settle_grid_due(self, grid_id: int) -> int:
    """Settle every due interval of one grid, then decide for each settled run;
    returns how many intervals this call settled.

    A repeated or concurrent run is a no-op (``settlement_close`` claims each
    interval once). A redelivered message (its worker died) may follow an
    attempt that committed a settlement but died before sending its decisions
    on: decisions are idempotent, so the grid's latest run is decided again.
    """
    settled = [closed.run.pk for closed in grid_settle_due(grid_id, clock.now()) if closed.settled_now]
    to_decide = settled
    if not settled and (self.request.delivery_info or {}).get("redelivered"):
        latest = SettlementRun.objects.filter(grid_id=grid_id, status=RunStatus.SETTLED).order_by("-interval_start")
        to_decide = list(latest.values_list("pk", flat=True)[:1])
    for run_id in to_decide:
        decide_after_settlement.delay(run_id)
    # The chain mirror (contracts/): plan each settlement's batches; a chain
    # outage only delays the mirror, never this task.
    mirrored = SettlementRun.objects.filter(pk__in=settled, transaction__isnull=False)
    for transaction_id in mirrored.values_list("transaction_id", flat=True):
        mirror_settlement.delay(transaction_id)
    return len(settled)


@shared_task(**RETRY)
def decide_after_settlement(run_id: int) -> int:
    """Decisions for every meter a settlement touched; returns how many were sent."""
    meter_ids = list(SettlementLine.objects.filter(run_id=run_id).values_list("meter_id", flat=True))
    return decide_meters.run(meter_ids)
