"""Operators' actions on grids and meters, for the admin and the REST API.

Each is the underlying service (``meters.services``) and its audit record
(``utility.audit``: who, what, on what, when, why) in one transaction, so an
action is never done unrecorded nor recorded undone. Forcing a meter on or off
is ``meters.supply.meter_force_state`` / ``meter_release``, which record
themselves. Refusals raise ``django.core.exceptions.ValidationError`` (field
by field) and write nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from utility.audit.services import operator_action_record

from .models import Grid, Meter
from .services import IssuedMeter, grid_update_rules, meter_add, meter_rotate_secret
from .supply import meters_decide

METER_SETTINGS = ("label", "owner", "public", "never_disconnect", "active")


def _check_operator(operator: str) -> None:
    if not isinstance(operator, str) or not operator.strip():
        raise ValidationError("the operator's name is required (it is recorded)")


def grid_rules_change(grid: Grid, rules: dict[str, int], operator: str, now: datetime) -> Grid:
    """Change a grid's rules (tariff µk/kWh, fees, credit limit µk, grace s,
    coin price cents, loss alert bp); they apply from the next settlement.
    Records the old and new value of each rule that changed."""
    _check_operator(operator)
    with transaction.atomic():
        locked = Grid.objects.select_for_update().get(pk=grid.pk)
        before = {name: getattr(locked, name) for name in rules if hasattr(locked, name)}
        grid_update_rules(locked, **rules)
        changes = {name: [before[name], value] for name, value in rules.items() if before.get(name) != value}
        if changes:
            operator_action_record(operator, "grid_rules_change", f"grid:{locked.slug}", now, "", changes)
    return locked


def meter_register(
    grid: Grid,
    public_id: str,
    kind: str,
    operator: str,
    now: datetime,
    *,
    public: bool = False,
    label: str = "",
    owner_username: str | None = None,
    never_disconnect: bool = False,
) -> IssuedMeter:
    """Register a meter and issue its secret (in the result: show it once,
    it is never stored in plain)."""
    _check_operator(operator)
    with transaction.atomic():
        issued = meter_add(grid, public_id, kind, public=public, label=label, owner_username=owner_username or None)
        if never_disconnect:
            Meter.objects.filter(pk=issued.meter.pk).update(never_disconnect=True)
            issued.meter.never_disconnect = True
        detail = {"grid": grid.slug, "kind": kind, "public": public, "owner": owner_username or None}
        operator_action_record(operator, "meter_register", f"meter:{public_id}", now, "", detail)
    return issued


def meter_secret_reissue(meter: Meter, operator: str, now: datetime, reason: str = "") -> str:
    """Issue a new secret for ``meter`` (the old one stops at once); returns it
    (show it once). The secret itself is never recorded."""
    _check_operator(operator)
    with transaction.atomic():
        secret = meter_rotate_secret(meter)
        operator_action_record(operator, "meter_secret_reissue", f"meter:{meter.public_id}", now, reason, {})
    return secret


def _settings_clean(meter: Meter, changes: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(METER_SETTINGS))
    if unknown:
        raise ValidationError({name: "not a meter setting an operator changes" for name in unknown})
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "owner":
            owner = None
            if value:
                owner = get_user_model().objects.filter(username=value).first()
                if owner is None:
                    raise ValidationError({"owner": f"no resident named {value!r}"})
            cleaned["owner"] = owner
        elif name == "label":
            if not isinstance(value, str) or len(value) > 120:
                raise ValidationError({"label": "a label is text of at most 120 characters"})
            cleaned["label"] = value
        else:
            if type(value) is not bool:
                raise ValidationError({name: "must be true or false"})
            cleaned[name] = value
    return cleaned


def meter_settings_change(
    meter: Meter, changes: dict[str, Any], operator: str, now: datetime, reason: str = ""
) -> Meter:
    """Change a meter's label, owner (a username, or empty for none), public,
    never-disconnect and active flags. Recorded with each old and new value.
    Marking a meter never-disconnect (or active again) decides for it at once:
    a meter cut off is switched back on."""
    _check_operator(operator)
    cleaned = _settings_clean(meter, changes)
    with transaction.atomic():
        locked = Meter.objects.select_for_update(of=("self",)).select_related("owner").get(pk=meter.pk)
        diff = {}
        for name, value in cleaned.items():
            old = getattr(locked, name)
            if old != value:
                diff[name] = [_shown(old), _shown(value)]
                setattr(locked, name, value)
        if diff:
            locked.save(update_fields=list(cleaned))
            operator_action_record(operator, "meter_settings_change", f"meter:{locked.public_id}", now, reason, diff)
    if diff.keys() & {"never_disconnect", "active"}:
        meters_decide([locked.pk], now, issued_by=operator)
        locked.refresh_from_db()
    return locked


def _shown(value: Any) -> Any:
    """A JSON-friendly form of a setting for the audit record."""
    if hasattr(value, "get_username"):
        return value.get_username()
    return value
