"""Connect onboarding: a producer's Express account and its account links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError

from ..client import AccountState, ProviderError, payments_client
from ..models import ConnectedAccount
from .common import PaymentsError, site_url


def connect_onboarding_url(user, now: datetime) -> str:
    """Where the producer finishes onboarding: an account link for their
    connected account, created on first use (idempotency key ``account:<user>``,
    so a double click makes one account)."""
    client = payments_client()
    account = ConnectedAccount.objects.filter(user=user).first()
    try:
        if account is None:
            state = client.account_create(
                email=getattr(user, "email", "") or "",
                metadata={"user_id": str(user.pk), "username": user.get_username()},
                idempotency_key=f"account:{user.pk}",
            )
            account = _account_save(user, state, now)
        return client.account_link_create(
            account_id=account.stripe_account_id,
            refresh_url=site_url("payments:connect_refresh"),
            return_url=site_url("payments:connect_return"),
        )
    except ProviderError as exc:
        raise PaymentsError("Stripe onboarding could not be opened; please try again in a minute") from exc


def _account_save(user, state: AccountState, now: datetime) -> ConnectedAccount:
    try:
        return ConnectedAccount.objects.create(
            user=user,
            stripe_account_id=state.id,
            details_submitted=state.details_submitted,
            payouts_enabled=state.payouts_enabled,
            created_at=now,
            updated_at=now,
        )
    except IntegrityError:  # a concurrent click saved it first (same account: same key)
        return ConnectedAccount.objects.get(user=user)


def connect_account_refresh(user, now: datetime) -> ConnectedAccount | None:
    """Ask Stripe whether the producer's account can receive payouts now
    (after they come back from onboarding)."""
    account = ConnectedAccount.objects.filter(user=user).first()
    if account is None:
        return None
    try:
        state = payments_client().account_retrieve(account.stripe_account_id)
    except ProviderError as exc:
        raise PaymentsError("Stripe could not be asked about your account; please try again") from exc
    _account_update(account.stripe_account_id, state.details_submitted, state.payouts_enabled, now)
    account.refresh_from_db()
    return account


def _account_update(account_id: str, details_submitted: bool, payouts_enabled: bool, now: datetime) -> None:
    ConnectedAccount.objects.filter(stripe_account_id=account_id).update(
        details_submitted=details_submitted, payouts_enabled=payouts_enabled, updated_at=now
    )


def on_account_updated(account: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``account.updated`` (Connect): keep whether the account can be paid out."""
    _account_update(
        str(account.get("id") or ""),
        bool(account.get("details_submitted")),
        bool(account.get("payouts_enabled")),
        now,
    )
    return []
