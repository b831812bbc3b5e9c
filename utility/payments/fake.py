"""The local stand-in for Stripe (``PAYMENTS_BACKEND=fake``, the embedded default).

``FakeClient`` implements the same ``PaymentsClient`` the services call with
real keys, so the demo runs the production code path: Checkout opens the
stand-in's "pay" page, Connect onboarding its "finish onboarding" page, and
every outcome arrives as a Stripe-shaped event, signed with Stripe's scheme
and the configured webhook secret, posted to the real webhook view (in
process, after commit; undelivered ones are sent again by
``fake_events_redeliver``, as Stripe retries). Objects live in the database
(``FakeObject``) so the web process and workers share them; idempotency keys
behave like Stripe's. It never succeeds silently: a payment is paid only by
pressing "Pay", and it is refused when a live key is configured
(``client.payments_client``).

Rule shared with real Stripe: never call the client inside a database
transaction — the provider's state must not be rolled back with ours.
"""

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

from .client import AccountState, CheckoutSession, ProviderDeclined, ProviderObject, webhook_secrets
from .models import FakeEvent, FakeObject

logger = logging.getLogger(__name__)

API_VERSION = "2025-08-27.basil"
MAX_DELIVERY_ATTEMPTS = 30
CHECKOUT_OUTCOMES = ("pay", "pay_async", "pay_async_fail", "cancel")


def fake_sign(payload: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header: ``t=<unix s>,v1=<HMAC-SHA256 of "t.payload">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _new_id(prefix: str) -> str:
    return f"{prefix}_fake{secrets.token_hex(10)}"


def _create(
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


def _get(object_id: str, kind: str, lock: bool = False) -> dict[str, Any]:
    rows = FakeObject.objects.select_for_update() if lock else FakeObject.objects
    found = rows.filter(pk=object_id, kind=kind).first()
    if found is None:
        raise ProviderDeclined(f"No such {kind}: '{object_id}'")
    return found.data


def _save(obj: dict[str, Any]) -> None:
    FakeObject.objects.filter(pk=obj["id"]).update(data=obj)


def _emit(event_type: str, obj: dict[str, Any], account: str = "") -> str:
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


class FakeClient:
    """``PaymentsClient`` backed by the stand-in. ``payout_outcome`` settles
    each new payout at once (``"paid"`` for the demo; ``None`` leaves it
    pending for ``fake_payout_settle``)."""

    def __init__(self, payout_outcome: str | None = "paid") -> None:
        self.payout_outcome = payout_outcome

    def checkout_session_create(
        self,
        *,
        amount_cents: int,
        currency: str,
        product_name: str,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession:
        fields = {
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": amount_cents,
            "currency": currency,
            "product_name": product_name,
            "client_reference_id": metadata.get("topup_id"),
            "metadata": metadata,
            "payment_intent": None,
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        session, _ = _create("checkout.session", "cs", fields, idempotency_key)
        url = settings.SITE_URL + reverse("payments:fake_checkout", args=[session["id"]])
        return CheckoutSession(session["id"], url)

    @transaction.atomic
    def refund_create(
        self, *, payment_intent_id: str, amount_cents: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderObject:
        found = FakeObject.objects.filter(idempotency_key=idempotency_key).first()
        if found is not None:
            return ProviderObject(found.data["id"], found.data["status"])
        intent = _get(payment_intent_id, "payment_intent")
        charge = _get(intent["latest_charge"], "charge", lock=True)
        if charge.get("disputed"):
            raise ProviderDeclined(f"Charge {charge['id']} has been charged back; cannot issue a refund.")
        if charge["amount_refunded"] + amount_cents > charge["amount"]:
            raise ProviderDeclined(f"Charge {charge['id']} has already been refunded.")
        fields = {"amount": amount_cents, "currency": charge["currency"], "charge": charge["id"]}
        refund, _ = _create(
            "refund",
            "re",
            {**fields, "payment_intent": payment_intent_id, "metadata": metadata, "status": "succeeded"},
            idempotency_key,
        )
        charge["amount_refunded"] += amount_cents
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        _save(charge)
        _emit("charge.refunded", charge)
        return ProviderObject(refund["id"], refund["status"])

    def account_create(self, *, email: str, metadata: dict[str, str], idempotency_key: str) -> AccountState:
        fields = {
            "type": "express",
            "email": email,
            "metadata": metadata,
            "details_submitted": False,
            "payouts_enabled": False,
            "charges_enabled": False,
            "settings": {"payouts": {"schedule": {"interval": "manual"}}},
        }
        account, _ = _create("account", "acct", fields, idempotency_key)
        return AccountState(account["id"], False, False)

    def account_retrieve(self, account_id: str) -> AccountState:
        account = _get(account_id, "account")
        return AccountState(account["id"], account["details_submitted"], account["payouts_enabled"])

    def account_link_create(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        _get(account_id, "account")
        fields = {"account": account_id, "refresh_url": refresh_url, "return_url": return_url}
        link, _ = _create("account_link", "link", fields)
        return settings.SITE_URL + reverse("payments:fake_onboarding", args=[link["id"]])

    def transfer_find(self, *, transfer_group: str) -> ProviderObject | None:
        found = FakeObject.objects.filter(kind="transfer", group=transfer_group).order_by("created_at").first()
        return ProviderObject(found.pk, "created") if found else None

    def transfer_create(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        transfer_group: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderObject:
        account = _get(destination, "account")
        if not account["payouts_enabled"]:
            raise ProviderDeclined(f"Account {destination} cannot receive transfers: onboarding is not finished")
        fields = {
            "amount": amount_cents,
            "currency": currency,
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": metadata,
            "reversed": False,
            "reversals": {"object": "list", "data": []},
        }
        transfer, _ = _create("transfer", "tr", fields, idempotency_key, group=transfer_group)
        return ProviderObject(transfer["id"], "created")

    @transaction.atomic
    def transfer_reverse(self, *, transfer_id: str, metadata: dict[str, str], idempotency_key: str) -> ProviderObject:
        transfer = _get(transfer_id, "transfer", lock=True)
        fields = {"transfer": transfer_id, "amount": transfer["amount"], "metadata": metadata}
        reversal, created = _create("transfer_reversal", "trr", fields, idempotency_key, group=transfer_id)
        if created:
            if transfer["reversed"]:
                raise ProviderDeclined(f"Transfer {transfer_id} is already fully reversed.")
            transfer["reversed"] = True
            transfer["reversals"]["data"].append(reversal)
            _save(transfer)
            _emit("transfer.reversed", transfer)
        return ProviderObject(reversal["id"], "reversed")

    def payout_find(self, *, account_id: str, withdrawal_id: str) -> ProviderObject | None:
        for payout in FakeObject.objects.filter(kind="payout", group=account_id).order_by("created_at"):
            if payout.data["metadata"].get("withdrawal_id") == withdrawal_id:
                return ProviderObject(payout.pk, payout.data["status"])
        return None

    def payout_create(
        self,
        *,
        account_id: str,
        amount_cents: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderObject:
        with transaction.atomic():
            _get(account_id, "account")
            fields = {"amount": amount_cents, "currency": currency, "metadata": metadata, "status": "pending"}
            payout, created = _create("payout", "po", fields, idempotency_key, group=account_id)
            if created:
                _emit("payout.created", payout, account=account_id)
        if created and self.payout_outcome:
            fake_payout_settle(payout["id"], self.payout_outcome)
        return ProviderObject(payout["id"], payout["status"])

    def payout_retrieve(self, *, account_id: str, payout_id: str) -> ProviderObject:
        payout = _get(payout_id, "payout")
        return ProviderObject(payout["id"], payout["status"])


# The stand-in's own pages and controls (the resident's side of Stripe).


def fake_checkout_session(session_id: str) -> dict[str, Any] | None:
    """The session the "pay" page shows, or ``None``."""
    found = FakeObject.objects.filter(pk=session_id, kind="checkout.session").first()
    return found.data if found else None


@transaction.atomic
def fake_checkout_finish(session_id: str, outcome: str) -> str:
    """The resident pressed a button on the "pay" page: ``pay`` (card),
    ``pay_async`` / ``pay_async_fail`` (a bank debit that succeeds / fails
    later) or ``cancel``. Emits the events Stripe would; returns where the
    resident goes next."""
    if outcome not in CHECKOUT_OUTCOMES:
        raise ProviderDeclined(f"unknown outcome {outcome!r}")
    session = _get(session_id, "checkout.session", lock=True)
    if session["status"] != "open":
        return session["success_url"]
    if outcome == "cancel":
        session["status"] = "expired"
        _save(session)
        _emit("checkout.session.expired", session)
        return session["cancel_url"]
    intent, charge = _payment_make(session, succeeded=outcome != "pay_async_fail")
    session.update(status="complete", payment_intent=intent["id"])
    session["payment_status"] = "paid" if outcome == "pay" else "unpaid"
    _save(session)
    _emit("checkout.session.completed", session)
    if outcome == "pay_async":
        session["payment_status"] = "paid"
        _save(session)
        _emit("checkout.session.async_payment_succeeded", session)
    if outcome == "pay_async_fail":
        _emit("checkout.session.async_payment_failed", session)
        _emit("payment_intent.payment_failed", intent)
    else:
        _emit("payment_intent.succeeded", intent)
        _emit("charge.succeeded", charge)
    return session["success_url"]


def _payment_make(session: dict[str, Any], succeeded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    amount, currency, metadata = session["amount_total"], session["currency"], session["metadata"]
    charge, _ = _create(
        "charge",
        "ch",
        {
            "amount": amount,
            "amount_refunded": 0,
            "currency": currency,
            "paid": succeeded,
            "refunded": False,
            "disputed": False,
            "status": "succeeded" if succeeded else "failed",
            "metadata": metadata,
        },
    )
    intent, _ = _create(
        "payment_intent",
        "pi",
        {
            "amount": amount,
            "amount_received": amount if succeeded else 0,
            "currency": currency,
            "status": "succeeded" if succeeded else "requires_payment_method",
            "metadata": metadata,
            "latest_charge": charge["id"],
        },
    )
    charge["payment_intent"] = intent["id"]
    _save(charge)
    return intent, charge


def fake_onboarding_link(link_id: str) -> dict[str, Any] | None:
    """The account link the "finish onboarding" page shows, or ``None``."""
    found = FakeObject.objects.filter(pk=link_id, kind="account_link").first()
    return found.data if found else None


@transaction.atomic
def fake_onboarding_finish(link_id: str) -> str:
    """The producer "finished onboarding": the account can be paid out
    (``account.updated``). Returns the link's return URL."""
    link = _get(link_id, "account_link")
    account = _get(link["account"], "account", lock=True)
    if not account["payouts_enabled"]:
        account.update(details_submitted=True, payouts_enabled=True, charges_enabled=True)
        _save(account)
        _emit("account.updated", account, account=account["id"])
    return link["return_url"]


@transaction.atomic
def fake_payout_settle(payout_id: str, outcome: str) -> None:
    """The bank's answer to a pending payout: ``paid`` or ``failed``."""
    row = FakeObject.objects.select_for_update().get(pk=payout_id, kind="payout")
    payout = row.data
    if payout["status"] != "pending":
        return
    payout["status"] = outcome
    if outcome == "failed":
        payout.update(failure_code="account_closed", failure_message="The bank account has been closed.")
    _save(payout)
    _emit(f"payout.{outcome}", payout, account=row.group)


@transaction.atomic
def fake_dispute_open(payment_intent_id: str) -> str:
    """The card holder disputes the whole payment (``charge.dispute.created``)."""
    intent = _get(payment_intent_id, "payment_intent")
    charge = _get(intent["latest_charge"], "charge", lock=True)
    charge["disputed"] = True
    _save(charge)
    fields = {
        "amount": charge["amount"],
        "currency": charge["currency"],
        "charge": charge["id"],
        "payment_intent": payment_intent_id,
        "status": "needs_response",
        "reason": "fraudulent",
    }
    dispute, _ = _create("dispute", "dp", fields)
    _emit("charge.dispute.created", dispute)
    return dispute["id"]


@transaction.atomic
def fake_dispute_close(dispute_id: str, won: bool) -> None:
    """The bank decided (``charge.dispute.closed`` with ``won`` or ``lost``)."""
    dispute = _get(dispute_id, "dispute", lock=True)
    dispute["status"] = "won" if won else "lost"
    _save(dispute)
    _emit("charge.dispute.closed", dispute)
