"""Celery tasks of the payments app: ids in, one service call, retries here.
Every task is safe to run twice (idempotency keys and forward-only states)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from utility import clock

from . import fake
from .services import payments_reconcile as reconcile
from .services import refund_submit, withdrawal_advance, withdrawal_reverse_transfer

RETRY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, ConnectionError, TimeoutError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": 10,
}


@shared_task(**RETRY)
def withdrawal_advance_task(withdrawal_id: str) -> str:
    """Transfer, then payout, as far as the withdrawal can go now."""
    return withdrawal_advance(withdrawal_id, clock.now()).status


@shared_task(**RETRY)
def withdrawal_reverse_task(withdrawal_id: str) -> str:
    """Bring back the transfer of a failed withdrawal."""
    return withdrawal_reverse_transfer(withdrawal_id, clock.now()).reversal_id


@shared_task(**RETRY)
def refund_submit_task(refund_id: str) -> str:
    """Send an operator's refund to Stripe (the coins were already taken back)."""
    return refund_submit(refund_id).status


@shared_task(**RETRY)
def payments_reconcile() -> int:
    """Every few minutes: withdrawals stuck in a middle state, overdue payouts,
    transfers to reverse, refunds not yet sent."""
    return reconcile(clock.now())


@shared_task(**RETRY)
def fake_events_redeliver() -> int:
    """The stand-in's retries of events the webhook did not take (a no-op
    unless ``PAYMENTS_BACKEND=fake``)."""
    if settings.PAYMENTS_BACKEND != "fake":
        return 0
    return fake.fake_events_redeliver()
