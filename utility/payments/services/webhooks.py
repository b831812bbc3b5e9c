"""The webhook inbox: store every verified event once (keyed by its id), then
process it inside one database transaction; a duplicate is already done.

Like dj-stripe's ``WebhookEventTrigger``: the row is written first and kept,
with the error, when processing fails, so Stripe's retry (or an operator)
processes it again; a processed row is never processed twice, even when the
same event arrives ten times at once (the row lock serialises them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F

from ..models import WebhookEvent
from . import connect, disputes, topups, withdrawals
from .common import EventDeferred

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], dict[str, Any], datetime], list[str]]

# The events to enable in the Stripe dashboard (docs/payments.md); any other
# type is stored and marked processed without effect.
HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": topups.on_session_completed,
    "checkout.session.async_payment_succeeded": topups.on_session_completed,
    "checkout.session.async_payment_failed": topups.on_session_failed,
    "checkout.session.expired": topups.on_session_failed,
    "payment_intent.succeeded": topups.on_payment_intent_succeeded,
    "charge.refunded": topups.on_charge_refunded,
    "charge.dispute.created": disputes.on_dispute,
    "charge.dispute.closed": disputes.on_dispute,
    "account.updated": connect.on_account_updated,
    "payout.paid": withdrawals.on_payout,
    "payout.failed": withdrawals.on_payout,
    "transfer.reversed": withdrawals.on_transfer_reversed,
}


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """``processed``, ``duplicate``, ``deferred`` (kept until its payment is
    known) or ``failed`` (kept with its error; answer non-2xx so Stripe retries)."""

    result: str

    @property
    def ok(self) -> bool:
        return self.result != "failed"


def webhook_event_receive(event: dict[str, Any], now: datetime) -> WebhookOutcome:
    """Store a verified event (once) and process it (once).

    ``event`` is the parsed body whose signature was checked. Processing runs
    in one transaction with the inbox row locked; on any error the
    transaction is undone, the error recorded on the row, and ``failed``
    returned.
    """
    event_id = str(event["id"])
    WebhookEvent.objects.get_or_create(
        id=event_id,
        defaults={
            "type": str(event.get("type") or "")[:100],
            "account": str(event.get("account") or "")[:255],
            "livemode": bool(event.get("livemode")),
            "payload": event,
            "received_at": now,
        },
    )
    return webhook_event_process(event_id, now)


def webhook_event_process(event_id: str, now: datetime) -> WebhookOutcome:
    """Process a stored event unless it was processed (operators may call it
    again for a failed one)."""
    try:
        with transaction.atomic():
            row = WebhookEvent.objects.select_for_update().get(pk=event_id)
            if row.processed_at is not None:
                return WebhookOutcome("duplicate")
            return WebhookOutcome(_process(row, now))
    except Exception as exc:
        logger.exception("stripe event %s could not be processed", event_id)
        WebhookEvent.objects.filter(pk=event_id, processed_at__isnull=True).update(
            attempts=F("attempts") + 1, error=f"{type(exc).__name__}: {exc}"[:4000]
        )
        return WebhookOutcome("failed")


def _process(row: WebhookEvent, now: datetime) -> str:
    """Apply one locked, unprocessed event; then replay the events that were
    waiting for a payment it made known."""
    handler = HANDLERS.get(row.type)
    try:
        with transaction.atomic():
            linked = handler(row.payload["data"]["object"], row.payload, now) if handler else []
    except EventDeferred as deferred:
        row.waiting_for, row.error = deferred.key[:255], ""
        row.attempts += 1
        row.save(update_fields=["waiting_for", "error", "attempts"])
        return "deferred"
    row.processed_at, row.waiting_for, row.error = now, "", ""
    row.attempts += 1
    row.save(update_fields=["processed_at", "waiting_for", "error", "attempts"])
    for key in linked:
        waiting = WebhookEvent.objects.select_for_update().filter(waiting_for=key, processed_at__isnull=True)
        for waiting_row in waiting.order_by("received_at", "id"):
            _process(waiting_row, now)
    return "processed"
