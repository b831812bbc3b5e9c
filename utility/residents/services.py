"""Resident wallets: operator-issued credit (how coins enter before Stripe)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from utility.audit.services import operator_action_record
from utility.ledger.models import AccountKind, Transaction
from utility.ledger.services import LedgerError, system_account, transaction_post, wallet_ensure


class ResidentError(Exception):
    """A clear, user-facing refusal; nothing was written."""


def resident_get(username: str):
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ResidentError(f"no active resident named {username!r}")
    return user


def check_amount_uk(amount_uk: object) -> int:
    """A positive integer number of µk, or a clear ``ResidentError``."""
    if type(amount_uk) is not int:
        raise ResidentError(f"amount must be a whole number of µk, got {amount_uk!r}")
    if amount_uk <= 0:
        raise ResidentError(f"amount must be positive, got {amount_uk} µk")
    return amount_uk


@transaction.atomic
def wallet_credit(
    username: str, amount_uk: int, reason: str, operator: str, request_id: str, now: datetime
) -> Transaction:
    """Issue ``amount_uk`` µk of operator credit to a resident's wallet, once
    per ``request_id`` (a retry returns the original; the same id for another
    amount or resident is refused). The operator's name and reason are recorded
    with the movement and in the audit log. Raises ``ResidentError``; nothing
    is written then."""
    check_amount_uk(amount_uk)
    if not isinstance(reason, str) or not reason.strip():
        raise ResidentError("a reason is required for operator credit")
    if not isinstance(operator, str) or not operator.strip():
        raise ResidentError("the operator's name is required (it is recorded)")
    if not isinstance(request_id, str) or not request_id.strip():
        raise ResidentError("a request id is required")
    wallet = wallet_ensure(resident_get(username))
    source = system_account(AccountKind.OPERATOR_CREDIT)
    try:
        posted = transaction_post(
            f"wallet_credit:{request_id}",
            "operator_credit",
            [(source.pk, -amount_uk), (wallet.pk, amount_uk)],
            memo=f"{operator}: {reason}",
        )
    except LedgerError as exc:
        raise ResidentError(str(exc)) from exc
    if posted.created:
        operator_action_record(
            operator, "wallet_credit", wallet.code, now, reason, {"amount_uk": amount_uk, "request_id": request_id}
        )
    return posted.transaction
