"""Stripe-shaped events and signatures for the payments tests.

Signatures are made here with the real scheme (HMAC-SHA256 over
``"<t>.<raw body>"``), independently of the code under test, and checked by
the view with the ``stripe`` library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from utility.payments.models import TopUp, Withdrawal
from utility.payments.pricing import CoinPrice

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
# 3 units a coin: 10.00 buys 3.333333 coins (a third of a µk rounded off).
PRICE = CoinPrice(grid_slug="testgrid", coin_price_cents=300, currency="usd")


def test_price(user) -> CoinPrice | None:
    """``PAYMENTS_PRICE_SOURCE`` in these tests (the core cannot import meters)."""
    return PRICE


test_price.__test__ = False  # type: ignore[attr-defined]  (not a test)


def signature(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def post_event(client, event: dict[str, Any], secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
    """POST ``event`` to the real webhook URL, signed; returns the response."""
    payload = json.dumps(event).encode()
    return client.post(
        "/payments/webhook/",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": signature(payload, secret, timestamp)},
    )


def new_id(prefix: str) -> str:
    return f"{prefix}_test{secrets.token_hex(8)}"


def event(event_type: str, obj: dict[str, Any], account: str = "", event_id: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": "2025-08-27.basil",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }
    if account:
        body["account"] = account
    return body


class Payment:
    """The Stripe ids and objects of one top-up's payment."""

    def __init__(self, topup: TopUp) -> None:
        self.topup = topup
        self.session_id = topup.checkout_session_id or new_id("cs")
        self.intent_id = new_id("pi")
        self.charge_id = new_id("ch")
        self.metadata = {"topup_id": str(topup.pk), "user_id": str(topup.user_id), "grid": topup.grid_slug}

    def session(self, payment_status: str = "paid") -> dict[str, Any]:
        return {
            "id": self.session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "complete",
            "payment_status": payment_status,
            "amount_total": self.topup.amount_cents,
            "currency": self.topup.currency,
            "client_reference_id": str(self.topup.pk),
            "metadata": self.metadata,
            "payment_intent": self.intent_id,
        }

    def intent(self) -> dict[str, Any]:
        return {
            "id": self.intent_id,
            "object": "payment_intent",
            "amount": self.topup.amount_cents,
            "amount_received": self.topup.amount_cents,
            "currency": self.topup.currency,
            "status": "succeeded",
            "metadata": self.metadata,
            "latest_charge": self.charge_id,
        }

    def charge(self, amount_refunded: int = 0) -> dict[str, Any]:
        return {
            "id": self.charge_id,
            "object": "charge",
            "amount": self.topup.amount_cents,
            "amount_refunded": amount_refunded,
            "refunded": amount_refunded == self.topup.amount_cents,
            "currency": self.topup.currency,
            "payment_intent": self.intent_id,
            "metadata": {},
        }

    def dispute(self, dispute_id: str, status: str, amount: int | None = None) -> dict[str, Any]:
        return {
            "id": dispute_id,
            "object": "dispute",
            "amount": self.topup.amount_cents if amount is None else amount,
            "currency": self.topup.currency,
            "charge": self.charge_id,
            "payment_intent": self.intent_id,
            "status": status,
            "reason": "fraudulent",
        }

    def completed(self, payment_status: str = "paid") -> dict[str, Any]:
        return event("checkout.session.completed", self.session(payment_status))

    def intent_succeeded(self) -> dict[str, Any]:
        return event("payment_intent.succeeded", self.intent())


def payout(withdrawal: Withdrawal, payout_id: str, status: str) -> dict[str, Any]:
    """A Connect ``payout.<status>`` event for ``withdrawal``."""
    obj = {
        "id": payout_id,
        "object": "payout",
        "amount": withdrawal.amount_cents,
        "currency": withdrawal.currency,
        "status": status,
        "metadata": {"withdrawal_id": str(withdrawal.pk)},
    }
    if status == "failed":
        obj.update(failure_code="account_closed", failure_message="The bank account has been closed.")
    return event(f"payout.{status}", obj, account=withdrawal.stripe_account_id)
