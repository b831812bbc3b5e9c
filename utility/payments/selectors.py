"""Reads of the payments app. A resident's reads are filtered by owner here,
so a view cannot show another resident's top-up or withdrawal by mistake."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.conf import settings
from django.db.models import QuerySet
from django.utils.module_loading import import_string

from utility.ledger.selectors import account_balance
from utility.ledger.services import wallet_ensure

from .models import ConnectedAccount, Dispute, DisputeStatus, TopUp, Withdrawal
from .pricing import CoinPrice


def coin_price_for(user) -> CoinPrice | None:
    """The coin price and currency of ``user``'s grid (``PAYMENTS_PRICE_SOURCE``),
    or ``None`` when the resident has no grid yet."""
    source: Callable[[object], CoinPrice | None] = import_string(settings.PAYMENTS_PRICE_SOURCE)
    return source(user)


def wallet_balance_uk(user) -> int:
    """The resident's wallet balance in µk (negative after a refund or dispute
    of coins already spent)."""
    return account_balance(wallet_ensure(user).pk)


def wallet_freeze_reason(user) -> str | None:
    """Why the wallet may neither fund meters nor withdraw, or ``None``.

    Frozen while a dispute on one of the resident's payments is open, and
    while the wallet is below zero (coins were taken back after being spent).
    """
    if Dispute.objects.filter(topup__user=user, status=DisputeStatus.OPEN).exists():
        return "a card payment of yours is disputed; the wallet is frozen until the dispute is resolved"
    if wallet_balance_uk(user) < 0:
        return "the wallet is below zero after a refund or dispute; top it up first"
    return None


def wallet_is_frozen(user) -> bool:
    """True while the wallet must not fund meters or withdraw (see ``wallet_freeze_reason``)."""
    return wallet_freeze_reason(user) is not None


def topups_for(user) -> QuerySet[TopUp]:
    """The resident's own top-ups, newest first."""
    return TopUp.objects.filter(user=user).order_by("-created_at")


def withdrawals_for(user) -> QuerySet[Withdrawal]:
    """The resident's own withdrawals, newest first."""
    return Withdrawal.objects.filter(user=user).order_by("-created_at")


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def topup_for(user, topup_id: object) -> TopUp | None:
    """The top-up with ``topup_id`` if it is ``user``'s, else ``None``."""
    key = _uuid(topup_id)
    return None if key is None else topups_for(user).filter(pk=key).first()


def withdrawal_for(user, withdrawal_id: object) -> Withdrawal | None:
    """The withdrawal with ``withdrawal_id`` if it is ``user``'s, else ``None``."""
    key = _uuid(withdrawal_id)
    return None if key is None else withdrawals_for(user).filter(pk=key).first()


def connected_account_for(user) -> ConnectedAccount | None:
    """The resident's Connect account, if they started onboarding."""
    return ConnectedAccount.objects.filter(user=user).first()


def withdrawals_stuck(now) -> QuerySet[Withdrawal]:
    """Withdrawals an operator should look at, oldest first: stuck in a middle
    state longer than the reconciler waits, or a payout whose answer is
    overdue. (Added for the operator page, issue 7.)"""
    from django.db.models import Q

    from .services.withdrawals import PAYOUT_POLL_AFTER, STUCK_AFTER

    middle = Q(status__in=["held", "transfer_created"], updated_at__lt=now - STUCK_AFTER)
    overdue = Q(status="payout_created", updated_at__lt=now - PAYOUT_POLL_AFTER)
    return Withdrawal.objects.filter(middle | overdue).select_related("user").order_by("updated_at")
