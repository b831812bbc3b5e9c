"""The small client interface the payment services call, and the one factory.

Two implementations: ``stripe_client.StripeClient`` (the ``stripe`` package;
the only module that imports it) and ``fake.FakeClient`` (the local stand-in,
``PAYMENTS_BACKEND=fake``). Services never know which one they hold. Amounts
are integers in the currency's smallest unit (``*_cents``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# The stand-in's signing secret when none is configured (never valid at Stripe).
FAKE_WEBHOOK_SECRET = "whsec_commonwatt_fake_local_only"  # noqa: S105 (public by design)
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


class ProviderError(Exception):
    """The payment provider did not do what was asked."""


class ProviderDeclined(ProviderError):
    """A definitive refusal (invalid request, card declined): do not retry."""


class ProviderUnavailable(ProviderError):
    """Network, rate limit, 5xx, credentials: nothing is known; retry later
    with the same idempotency key."""


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True, slots=True)
class AccountState:
    id: str
    details_submitted: bool
    payouts_enabled: bool


@dataclass(frozen=True, slots=True)
class ProviderObject:
    """A transfer, payout, refund or reversal: its id and status."""

    id: str
    status: str = ""


class PaymentsClient(Protocol):
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
    ) -> CheckoutSession: ...

    def refund_create(
        self, *, payment_intent_id: str, amount_cents: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderObject: ...

    def account_create(self, *, email: str, metadata: dict[str, str], idempotency_key: str) -> AccountState: ...

    def account_retrieve(self, account_id: str) -> AccountState: ...

    def account_link_create(self, *, account_id: str, refresh_url: str, return_url: str) -> str: ...

    def transfer_find(self, *, transfer_group: str) -> ProviderObject | None: ...

    def transfer_create(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        transfer_group: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderObject: ...

    def transfer_reverse(
        self, *, transfer_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderObject: ...

    def payout_find(self, *, account_id: str, withdrawal_id: str) -> ProviderObject | None: ...

    def payout_create(
        self,
        *,
        account_id: str,
        amount_cents: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderObject: ...

    def payout_retrieve(self, *, account_id: str, payout_id: str) -> ProviderObject: ...


_installed: PaymentsClient | None = None


def payments_client_install(client: PaymentsClient | None) -> None:
    """Use ``client`` instead of the configured one (tests; ``None`` resets)."""
    global _installed
    _installed = client


def payments_config_problems() -> list[str]:
    """What is wrong with the payment settings (empty when usable)."""
    backend = settings.PAYMENTS_BACKEND
    key = settings.STRIPE_SECRET_KEY
    if backend == "fake":
        if key.startswith(LIVE_KEY_PREFIXES):
            return ["PAYMENTS_BACKEND=fake is refused with a live Stripe key (sk_live_...): unset the key"]
        return []
    if backend == "stripe":
        problems = []
        if not key:
            problems.append("PAYMENTS_BACKEND=stripe needs STRIPE_SECRET_KEY")
        if not settings.STRIPE_WEBHOOK_SECRET:
            problems.append("PAYMENTS_BACKEND=stripe needs STRIPE_WEBHOOK_SECRET (whsec_...) to verify webhooks")
        return problems
    return [f"PAYMENTS_BACKEND must be 'fake' or 'stripe', got {backend!r}"]


def payments_client() -> PaymentsClient:
    """The configured client; raises ``ImproperlyConfigured`` at first use when
    the settings are unusable (e.g. the stand-in with a live key)."""
    if _installed is not None:
        return _installed
    problems = payments_config_problems()
    if problems:
        raise ImproperlyConfigured("; ".join(problems))
    if settings.PAYMENTS_BACKEND == "fake":
        from .fake import FakeClient

        return FakeClient()
    return _stripe_client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE)


@functools.lru_cache(maxsize=4)
def _stripe_client(api_key: str, api_base: str) -> PaymentsClient:
    """One client (and its HTTP session) per key and host."""
    from .stripe_client import StripeClient

    return StripeClient(api_key, api_base)


def webhook_secrets() -> list[str]:
    """The signing secrets a webhook may carry: the account endpoint's and the
    Connect endpoint's; the stand-in's own when the fake runs unconfigured."""
    secrets = [s for s in (settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_CONNECT_WEBHOOK_SECRET) if s]
    if not secrets and settings.PAYMENTS_BACKEND == "fake":
        secrets = [FAKE_WEBHOOK_SECRET]
    return secrets
