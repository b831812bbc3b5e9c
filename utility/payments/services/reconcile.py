"""The periodic sweep (``payments_reconcile`` task, every 5 minutes)."""

from __future__ import annotations

from datetime import datetime

from .disputes import refunds_reconcile
from .withdrawals import withdrawals_reconcile


def payments_reconcile(now: datetime) -> int:
    """Finish what a crash or an outage left: withdrawals stuck in a middle
    state, overdue payouts, transfers to reverse, refunds not yet sent.
    Returns how many rows were looked at; safe to run at any time, twice."""
    return withdrawals_reconcile(now) + refunds_reconcile(now)
