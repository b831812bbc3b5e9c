"""Stripe, through the ``stripe`` package: the only module that imports it.

``StripeClient`` implements ``client.PaymentsClient``; ``webhook_event_verify``
checks a webhook's signature for both backends (the stand-in signs with the
same scheme), so the webhook view has one code path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import stripe

from .client import AccountState, CheckoutSession, ProviderDeclined, ProviderObject, ProviderUnavailable

WEBHOOK_TOLERANCE_S = 300
T = TypeVar("T")


class WebhookSignatureInvalid(Exception):
    """Missing, malformed, wrong or stale ``Stripe-Signature``."""


def webhook_event_verify(payload: bytes, signature_header: str | None, secrets: Sequence[str]) -> dict[str, Any]:
    """The event in ``payload`` once ``stripe.Webhook.construct_event`` accepts
    its signature with one of ``secrets`` (300 s tolerance); else raises
    ``WebhookSignatureInvalid``. The signature covers the raw body, so this
    runs before anything parses or stores it."""
    if not signature_header:
        raise WebhookSignatureInvalid("no Stripe-Signature header")
    if not secrets:
        raise WebhookSignatureInvalid("no webhook secret is configured")
    last_error: Exception | None = None
    for secret in secrets:
        try:
            stripe.Webhook.construct_event(payload, signature_header, secret, tolerance=WEBHOOK_TOLERANCE_S)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            last_error = exc
            continue
        event = json.loads(payload)
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event.get("type"):
            raise WebhookSignatureInvalid("signed payload is not a Stripe event")
        return event
    raise WebhookSignatureInvalid(str(last_error))


def _call(make: Callable[[], T]) -> T:
    """Run one API call, mapping the stripe errors onto the two we act on."""
    try:
        return make()
    except (stripe.CardError, stripe.InvalidRequestError, stripe.PermissionError) as exc:
        raise ProviderDeclined(str(exc.user_message or exc)) from exc
    except stripe.StripeError as exc:
        # Connection, rate limit, 5xx, idempotency in flight, bad credentials:
        # the outcome is unknown or the fault is ours, never the resident's.
        raise ProviderUnavailable(str(exc)) from exc


def _account(obj: Any) -> AccountState:
    # stripe 16 objects are not dicts (no .get): read a plain copy.
    values = obj.to_dict()
    return AccountState(values["id"], bool(values.get("details_submitted")), bool(values.get("payouts_enabled")))


class StripeClient:
    """``PaymentsClient`` over the ``stripe`` package (v16, ``StripeClient``)."""

    def __init__(
        self,
        api_key: str,
        api_base: str = "",
        *,
        max_network_retries: int = 2,
        http_client: stripe.HTTPClient | None = None,
    ) -> None:
        """``api_base``: another API host (e.g. localstripe); the library
        retries network errors ``max_network_retries`` times with the same
        idempotency key."""
        self._stripe = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base, "connect": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=http_client,
        )

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
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount_cents,
                        "product_data": {"name": product_name},
                    },
                    "quantity": 1,
                }
            ],
            "client_reference_id": metadata.get("topup_id", ""),
            "metadata": metadata,
            # So payment_intent.* and charge.* events carry the top-up too.
            "payment_intent_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        session = _call(
            lambda: self._stripe.v1.checkout.sessions.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return CheckoutSession(session.id, session.url or "")

    def refund_create(
        self, *, payment_intent_id: str, amount_cents: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderObject:
        refund = _call(
            lambda: self._stripe.v1.refunds.create(
                params={"payment_intent": payment_intent_id, "amount": amount_cents, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        )
        return ProviderObject(refund.id, refund.status or "")

    def account_create(self, *, email: str, metadata: dict[str, str], idempotency_key: str) -> AccountState:
        params: dict[str, Any] = {
            "type": "express",
            "metadata": metadata,
            "capabilities": {"transfers": {"requested": True}},
            # Payouts only when a withdrawal asks: the platform creates them.
            "settings": {"payouts": {"schedule": {"interval": "manual"}}},
        }
        if email:
            params["email"] = email
        account = _call(
            lambda: self._stripe.v1.accounts.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return _account(account)

    def account_retrieve(self, account_id: str) -> AccountState:
        return _account(_call(lambda: self._stripe.v1.accounts.retrieve(account_id)))

    def account_link_create(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        link = _call(
            lambda: self._stripe.v1.account_links.create(
                params={
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        )
        return link.url

    def transfer_find(self, *, transfer_group: str) -> ProviderObject | None:
        found = _call(lambda: self._stripe.v1.transfers.list(params={"transfer_group": transfer_group, "limit": 1}))
        return ProviderObject(found.data[0].id, "created") if found.data else None

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
        transfer = _call(
            lambda: self._stripe.v1.transfers.create(
                params={
                    "amount": amount_cents,
                    "currency": currency,
                    "destination": destination,
                    "transfer_group": transfer_group,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return ProviderObject(transfer.id, "created")

    def transfer_reverse(self, *, transfer_id: str, metadata: dict[str, str], idempotency_key: str) -> ProviderObject:
        reversal = _call(
            lambda: self._stripe.v1.transfers.reversals.create(
                transfer_id, params={"metadata": metadata}, options={"idempotency_key": idempotency_key}
            )
        )
        return ProviderObject(reversal.id, "reversed")

    def payout_find(self, *, account_id: str, withdrawal_id: str) -> ProviderObject | None:
        # Idempotency keys expire after 24 hours; the payout's metadata does not.
        page = _call(
            lambda: self._stripe.v1.payouts.list(params={"limit": 100}, options={"stripe_account": account_id})
        )
        for payout in page.data:
            if (payout.to_dict().get("metadata") or {}).get("withdrawal_id") == withdrawal_id:
                return ProviderObject(payout.id, payout.status)
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
        payout = _call(
            lambda: self._stripe.v1.payouts.create(
                params={"amount": amount_cents, "currency": currency, "metadata": metadata},
                options={"stripe_account": account_id, "idempotency_key": idempotency_key},
            )
        )
        return ProviderObject(payout.id, payout.status)

    def payout_retrieve(self, *, account_id: str, payout_id: str) -> ProviderObject:
        payout = _call(lambda: self._stripe.v1.payouts.retrieve(payout_id, options={"stripe_account": account_id}))
        return ProviderObject(payout.id, payout.status)
