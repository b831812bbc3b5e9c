"""The stand-in's store and its events: Stripe-shaped objects with Stripe-like
idempotency keys, and events signed with Stripe's scheme, posted to the real
webhook view after commit (and again until it takes them)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import resolve, reverse
from django.utils import timezone

from ..client import ProviderDeclined, webhook_secrets
from ..models import FakeEvent, FakeObject

logger = logging.getLogger(__name__)

API_VERSION = "2025-08-27.basil"
MAX_DELIVERY_ATTEMPTS = 30


def fake_sign(payload: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header: ``t=<unix s>,v1=<HMAC-SHA256 of "t.payload">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _new_id(prefix: str) -> str:
    return f"{prefix}_fake{secrets.token_hex(10)}"


def object_create(
    kind: str, prefix: str, fields: dict[str, Any], idempotency_key: str = "", group: str = ""
) -> tuple[dict[str, Any], bool]:
    """Store a new object, or return the one made earlier with the same
    idempotency key (the request must be the same, as at Stripe)."""
    request_hash = hashlib.sha256(json.dumps([kind, fields], sort_keys=True).encode()).hexdigest()
    if idempotency_key:
        found = FakeObject.objects.filter(idempotency_key=idempotency_key).first()
        if found is not None:
            return _replayed(found, request_hash), False
    obj = {"id": _new_id(prefix), "object": kind, "created": int(time.time()), "livemode": False, **fields}
    try:
        with transaction.atomic():
            FakeObject.objects.create(
                id=obj["id"],
                kind=kind,
                idempotency_key=idempotency_key or None,
                request_hash=request_hash,
                group=group,
                data=obj,
            )
    except IntegrityError:
        return _replayed(FakeObject.objects.get(idempotency_key=idempotency_key), request_hash), False
    return obj, True


def _replayed(found: FakeObject, request_hash: str) -> dict[str, Any]:
    if found.request_hash != request_hash:
        raise ProviderDeclined("Keys for idempotent requests can only be used with the same parameters")
    return found.data


def object_get(object_id: str, kind: str, lock: bool = False) -> dict[str, Any]:
    rows = FakeObject.objects.select_for_update() if lock else FakeObject.objects
    found = rows.filter(pk=object_id, kind=kind).first()
    if found is None:
        raise ProviderDeclined(f"No such {kind}: '{object_id}'")
    return found.data


def object_save(obj: dict[str, Any]) -> None:
    FakeObject.objects.filter(pk=obj["id"]).update(data=obj)


def event_emit(event_type: str, obj: dict[str, Any], account: str = "") -> str:
    """Record an event (a snapshot of ``obj`` now) and deliver it after commit."""
    event: dict[str, Any] = {
        "id": _new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }
    if account:
        event["account"] = account
    FakeEvent.objects.create(id=event["id"], type=event_type, payload=json.dumps(event, indent=2))
    # robust: an undelivered event stays for fake_events_redeliver, as at Stripe.
    transaction.on_commit(lambda: fake_event_deliver(event["id"]), robust=True)
    return event["id"]


def _signing_secret(payload: dict[str, Any]) -> str:
    if payload.get("account") and settings.STRIPE_CONNECT_WEBHOOK_SECRET:
        return settings.STRIPE_CONNECT_WEBHOOK_SECRET
    return webhook_secrets()[0]


def fake_event_deliver(event_id: str) -> int:
    """Sign one event now (a fresh timestamp, like each Stripe attempt) and
    post it to the webhook view; a 2xx answer marks it delivered."""
    row = FakeEvent.objects.get(pk=event_id)
    if row.delivered_at is not None:
        return row.last_status or 200
    payload = row.payload.encode()
    header = fake_sign(payload, _signing_secret(json.loads(payload)), int(time.time()))
    try:
        status = _webhook_view_post(payload, header)
    except Exception:
        logger.exception("fake stripe: delivering %s failed", event_id)
        status = 599
    delivered = {"delivered_at": timezone.now()} if 200 <= status < 300 else {}
    FakeEvent.objects.filter(pk=event_id).update(attempts=F("attempts") + 1, last_status=status, **delivered)
    return status


def _webhook_view_post(payload: bytes, header: str) -> int:
    """POST to the webhook URL's own view, in this process (no network, and
    no deadlock in a single-threaded server)."""
    path = reverse("payments:webhook")
    site = urlsplit(settings.SITE_URL)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json; charset=utf-8",
        "CONTENT_LENGTH": str(len(payload)),
        "wsgi.input": io.BytesIO(payload),
        "wsgi.url_scheme": site.scheme or "http",
        "SERVER_NAME": site.hostname or "127.0.0.1",
        "SERVER_PORT": str(site.port or 80),
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": "Stripe/1.0 (+https://stripe.com/docs/webhooks) commonwatt-fake",
        "HTTP_STRIPE_SIGNATURE": header,
    }
    match = resolve(path)
    return match.func(WSGIRequest(environ), *match.args, **match.kwargs).status_code


def fake_events_redeliver() -> int:
    """Send again every event the webhook has not taken yet (oldest first)."""
    pending = FakeEvent.objects.filter(delivered_at__isnull=True, attempts__lt=MAX_DELIVERY_ATTEMPTS)
    event_ids = list(pending.order_by("created_at", "id").values_list("pk", flat=True)[:200])
    return sum(200 <= fake_event_deliver(event_id) < 300 for event_id in event_ids)
