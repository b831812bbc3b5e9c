"""Writes for grids and meters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from utility.ledger.models import AccountKind
from utility.ledger.services import account_ensure
from utility.lib.timeutil import interval_floor

from .credentials import mosquitto_hash, secret_generate, secret_seal
from .models import Grid, Meter, MeterKind

GRID_RULE_FIELDS = (
    "interval_s",
    "tariff_uk_per_kwh",
    "fee_fixed_uk",
    "fee_bp",
    "credit_limit_uk",
    "credit_grace_s",
    "loss_alert_bp",
    "settlement_grace_s",
    "coin_price_cents",
)


def _check_rules(rules: dict[str, int]) -> None:
    errors = {}
    for name, value in rules.items():
        if name not in GRID_RULE_FIELDS:
            errors[name] = "not a grid rule"
        elif type(value) is not int or value < 0:
            errors[name] = "must be a non-negative integer"
    interval_s = rules.get("interval_s", 3600)
    if "interval_s" not in errors and (interval_s < 60 or 86_400 % interval_s):
        errors["interval_s"] = "must be at least 60 and divide a day (86400 s) so intervals align to UTC"
    if "fee_bp" not in errors and rules.get("fee_bp", 0) > 10_000:
        errors["fee_bp"] = "cannot exceed 10000 (100 %)"
    if "coin_price_cents" not in errors and rules.get("coin_price_cents", 1) < 1:
        errors["coin_price_cents"] = "must be at least 1 cent"
    if errors:
        raise ValidationError(errors)


def grid_rules_check(rules: dict[str, int]) -> None:
    """Raise ``ValidationError`` naming each rule that is unknown, not a
    non-negative integer, or out of range (the checks of ``grid_create``)."""
    _check_rules(rules)


@transaction.atomic
def grid_create(slug: str, name: str, now: datetime, **rules: int) -> Grid:
    """Create a grid with its pool and fee accounts; settlement starts at the
    interval containing ``now``. Unknown or negative rules raise ``ValidationError``."""
    _check_rules(rules)
    if Grid.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"grid {slug!r} already exists"})
    grid = Grid(slug=slug, name=name or slug, started_at=interval_floor(now, rules.get("interval_s", 3600)), **rules)
    # Validate before opening the accounts, whose codes embed the slug.
    grid.full_clean(exclude=["pool_account", "fee_account"])
    grid.pool_account = account_ensure(f"pool:{slug}", AccountKind.POOL)
    grid.fee_account = account_ensure(f"fee:{slug}", AccountKind.FEE)
    grid.save()
    return grid


@transaction.atomic
def grid_update_rules(grid: Grid, **rules: int) -> Grid:
    """Change a grid's tariff, fees and limits; they apply from the next settlement."""
    _check_rules(rules)
    if "interval_s" in rules and rules["interval_s"] != grid.interval_s:
        raise ValidationError({"interval_s": "cannot change once a grid exists"})
    for name, value in rules.items():
        setattr(grid, name, value)
    grid.full_clean()
    grid.save(update_fields=list(rules) or None)
    return grid


@dataclass(frozen=True, slots=True)
class IssuedMeter:
    meter: Meter
    secret: str  # shown once; only its sealed form and hash are kept


@transaction.atomic
def meter_add(
    grid: Grid,
    public_id: str,
    kind: str,
    *,
    public: bool = False,
    label: str = "",
    owner_username: str | None = None,
) -> IssuedMeter:
    """Register a meter and issue its secret (returned once, never stored plain)."""
    if kind not in MeterKind.values:
        raise ValidationError({"kind": f"must be one of {', '.join(MeterKind.values)}"})
    if Meter.objects.filter(public_id=public_id).exists():
        raise ValidationError({"public_id": f"meter {public_id!r} already exists"})
    owner = None
    if owner_username is not None:
        owner = get_user_model().objects.filter(username=owner_username).first()
        if owner is None:
            raise ValidationError({"owner": f"no resident named {owner_username!r}"})
    secret = secret_generate()
    meter = Meter(
        grid=grid,
        public_id=public_id,
        kind=kind,
        public=public,
        label=label,
        owner=owner,
        secret_sealed=secret_seal(secret, public_id),
        secret_hash=mosquitto_hash(secret),
    )
    # Validate before opening the account, whose code embeds the meter id.
    meter.full_clean(exclude=["account"])
    meter.account = account_ensure(f"meter:{public_id}", AccountKind.METER)
    meter.save()
    return IssuedMeter(meter, secret)


@transaction.atomic
def meter_rotate_secret(meter: Meter) -> str:
    """Issue a new secret for ``meter`` (the old one stops working at once)."""
    secret = secret_generate()
    meter.secret_sealed = secret_seal(secret, meter.public_id)
    meter.secret_hash = mosquitto_hash(secret)
    meter.save(update_fields=["secret_sealed", "secret_hash"])
    return secret


def grid_mark_settled(grid_id: int, through: datetime) -> None:
    """Record that every interval before ``through`` is settled (monotonic)."""
    Grid.objects.filter(pk=grid_id).exclude(settled_through__gte=through).update(settled_through=through)


def reading_is_late(grid: Grid, interval_start: datetime) -> bool:
    """A reading is late when its interval was already settled."""
    return grid.settled_through is not None and interval_start < grid.settled_through
