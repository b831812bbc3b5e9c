"""Celery tasks of the chain mirror: the only callers of the web3 code.

``mirror_settlement`` is enqueued after a settlement commits; the beat runs
``mirror_drain`` every 30 s, which also plans any settlement whose message was
lost. Both are safe to run twice: a plan exists once per settlement, and a
batch's delivery is recorded before it is sent (see ``contracts.delivery``).
A chain outage is not an error here: the batches wait for the next drain.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from .delivery import mirror_catch_up
from .delivery import mirror_drain as drain
from .services import mirror_settlement_plan

RETRY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, ConnectionError, TimeoutError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": 10,
}


@shared_task(**RETRY)
def mirror_settlement(transaction_id: int) -> int:
    """Plan a settlement's batches (database only), then drain; returns the
    number of batches planned."""
    planned = mirror_settlement_plan(transaction_id)
    mirror_drain.delay()
    return planned.batch_count if planned is not None else 0


@shared_task(**RETRY)
def mirror_drain() -> dict:
    """Plan what was missed, then send pending batches in order."""
    planned = mirror_catch_up()
    result = drain()
    return {"planned": planned, "applied": result.applied, "pending": result.pending, "blocked_by": result.blocked_by}
