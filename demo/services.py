"""Seed and run the demo grid: the seed's Angel, Bennie, Carlos and Danny, a
street light, and a few dozen more meters, with a day of readings.

Until the simulated fleet (issue 8) speaks MQTT, readings are recorded
directly; settlement, the ledger and everything after are the real services.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from contracts.tasks import mirror_drain
from meters.models import Grid, Meter, Reading
from meters.services import grid_create, meter_add
from settlement.services import grid_settle_due
from utility.lib.timeutil import interval_floor

from . import profiles

GRID_SLUG = "demo"
SEED_PEOPLE = [
    # username, meter id, kind, label, scale: solar peak Wh or household %
    ("angel", "M-ANGEL", "producer", "Angel's solar roof", 6000),
    ("bennie", "M-BENNIE", "producer", "Bennie's solar roof", 5000),
    ("carlos", "M-CARLOS", "consumer", "Carlos's house", 140),
    ("danny", "M-DANNY", "consumer", "Danny's house", 100),
]
EXTRA_HOUSEHOLDS = 30
EXTRA_PRODUCERS = 6
DEMO_PASSWORD = "commonwatt-demo"  # noqa: S105 - the demo's published login


@dataclass(frozen=True, slots=True)
class DemoProfile:
    kind: str
    scale: int


def _profile_for(meter: Meter, index: int) -> DemoProfile:
    if meter.public:
        return DemoProfile("light", 150)
    if meter.kind == "producer":
        return DemoProfile("solar", 4000 + (index % 4) * 1000)
    return DemoProfile("household", 60 + (index % 5) * 20)


def _user(username: str, *, staff: bool = False):
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": staff, "is_superuser": staff})
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save()
    return user


@transaction.atomic
def demo_seed(now: datetime, hours: int = 24) -> Grid:
    """Create the demo grid (once) with its people and meters."""
    existing = Grid.objects.filter(slug=GRID_SLUG).first()
    if existing is not None:
        return existing
    _user("operator", staff=True)
    grid = grid_create(GRID_SLUG, "Demo community grid", now - timedelta(hours=hours), credit_limit_uk=2_000_000)
    for username, meter_id, kind, label, _scale in SEED_PEOPLE:
        _user(username)
        meter_add(grid, meter_id, kind, label=label, owner_username=username)
    meter_add(grid, "SL-0001", "consumer", public=True, label="Street light, Main St & 1st")
    for i in range(EXTRA_PRODUCERS):
        meter_add(grid, f"M-P{i + 1:03d}", "producer", label=f"Solar roof {i + 1}")
    for i in range(EXTRA_HOUSEHOLDS):
        meter_add(grid, f"M-H{i + 1:03d}", "consumer", label=f"House {i + 1}")
    return grid


def demo_readings(grid: Grid, until: datetime) -> int:
    """Record a reading per meter for every interval from the grid's start
    up to the last closed interval before ``until``; returns how many."""
    rng = random.Random(grid.pk)
    step = timedelta(seconds=grid.interval_s)
    last = interval_floor(until, grid.interval_s)
    meters = list(grid.meters.order_by("pk"))
    rows = []
    for index, meter in enumerate(meters):
        profile = next((p for p in SEED_PEOPLE if p[1] == meter.public_id), None)
        kind = DemoProfile("solar" if meter.kind == "producer" else "household", profile[4]) if profile else None
        kind = kind or _profile_for(meter, index)
        start = meter.last_interval_start + step if meter.last_interval_start else grid.started_at
        imp_total, exp_total = meter.last_import_total_wh or 0, meter.last_export_total_wh or 0
        seq = meter.last_seq or 0
        while start < last:
            hour = start.hour
            cloud = rng.choice([0, 0, 10, 30, 70])
            imp = exp = 0
            if kind.kind == "solar":
                exp = profiles.solar_wh(hour, kind.scale, cloud)
            elif kind.kind == "light":
                imp = profiles.street_light_wh(hour, kind.scale)
            else:
                imp = profiles.household_wh(hour, kind.scale, rng)
            imp_total, exp_total, seq = imp_total + imp, exp_total + exp, seq + 1
            rows.append(
                Reading(
                    meter=meter,
                    interval_start=start,
                    import_wh=imp,
                    export_wh=exp,
                    import_total_wh=imp_total,
                    export_total_wh=exp_total,
                    seq=seq,
                    received_at=timezone.now(),
                )
            )
            meter.last_interval_start, meter.last_seq = start, seq
            meter.last_import_total_wh, meter.last_export_total_wh = imp_total, exp_total
            start += step
    with transaction.atomic():
        Reading.objects.bulk_create(rows, batch_size=2000)
        Meter.objects.bulk_update(
            meters, ["last_interval_start", "last_seq", "last_import_total_wh", "last_export_total_wh"]
        )
    return len(rows)


def demo_tick(grid: Grid, now: datetime) -> tuple[int, int]:
    """Bring the demo up to ``now``: record readings, settle what is due."""
    recorded = demo_readings(grid, now)
    settled = [c for c in grid_settle_due(grid.pk, now) if c.settled_now]
    # The chain mirror plans every settlement not yet on chain and sends it.
    transaction.on_commit(mirror_drain.delay)
    return recorded, len(settled)
