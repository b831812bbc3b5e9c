"""Writes that belong to the web: signing up, the API token, and the
operator page's buttons (each an existing service plus its audit record).

Money moves only through the apps' own services (``meters.funding``,
``utility.payments.services``); nothing here touches the ledger directly.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from contracts.tasks import mirror_drain
from demo.clock import demo_clock_advance
from meters.models import Grid
from settlement.tasks import settle_grid_due
from utility.audit.services import operator_action_record
from utility.ledger.services import wallet_ensure
from utility.payments.tasks import payments_reconcile


@transaction.atomic
def resident_sign_up(username: str, email: str, password: str):
    """A new resident with an empty coin wallet. Raises ``ValidationError``
    (username taken or invalid, weak password); nothing is written then."""
    User = get_user_model()
    user = User(username=username, email=email)
    errors = {}
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        errors["password"] = exc.messages
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # a concurrent sign-up took the name
        raise ValidationError({"username": ["A user with that username already exists."]}) from exc
    wallet_ensure(user)
    return user


def profile_update(user, *, email: str, first_name: str, last_name: str):
    """Change the resident's e-mail and name (validated like the model)."""
    user.email, user.first_name, user.last_name = email, first_name, last_name
    user.full_clean(exclude=["password"])
    user.save(update_fields=["email", "first_name", "last_name"])
    return user


def api_token_rotate(user) -> Token:
    """A fresh API token for ``user`` (the old one stops working at once)."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_revoke(user) -> None:
    Token.objects.filter(user=user).delete()


def settlement_catch_up(grid: Grid, operator: str, now: datetime) -> None:
    """The operator page's "settle what is due": queue the grid's settlement
    task now (what the beat does every minute; safe to repeat: each interval
    is settled once). Recorded."""
    with transaction.atomic():
        operator_action_record(operator, "settlement_catch_up", f"grid:{grid.slug}", now)
        transaction.on_commit(lambda: settle_grid_due.delay(grid.pk), robust=True)


def payments_catch_up(operator: str, now: datetime) -> None:
    """The operator page's "reconcile payments": queue the sweep of stuck
    withdrawals and refunds (the beat's, every 5 minutes). Recorded."""
    with transaction.atomic():
        operator_action_record(operator, "payments_catch_up", "payments", now)
        transaction.on_commit(payments_reconcile.delay, robust=True)


def mirror_catch_up(operator: str, now: datetime) -> None:
    """The operator page's "drain the chain mirror": queue planning and
    sending the pending batches (the beat's, every 30 s). Recorded."""
    with transaction.atomic():
        operator_action_record(operator, "mirror_catch_up", "chain", now)
        transaction.on_commit(mirror_drain.delay, robust=True)


def demo_advance(username: str, now: datetime) -> datetime:
    """The grid page's clock button: move the demo's clock one interval ahead.
    Raises ``RuntimeError`` outside the demo (real time does not move)."""
    moved_to = demo_clock_advance(1)
    operator_action_record(username, "demo_clock_advance", "clock", now, "", {"to": moved_to.isoformat()})
    return moved_to


def api_token_get(user) -> Token:
    """The resident's API token, issued on first use."""
    token, _created = Token.objects.get_or_create(user=user)
    return token
