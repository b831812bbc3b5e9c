"""Test helpers: plain functions that build grids, meters, readings and users.

They go through the real services (``grid_create``, ``meter_add``) so every
grid gets its pool and fee accounts and every meter its account and sealed
secret. Readings are inserted directly, the way ingest stores them, with the
cumulative totals following the meter's earlier readings.

Times are fixed (``T0``), never the clock: tests pass ``now`` explicitly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Max, Sum

from meters.models import Grid, Meter, Reading
from meters.services import IssuedMeter, grid_create, meter_add, reading_is_late

# The start of the first interval of every test grid (aligned to any interval
# that divides a day).
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def user_make(username: str = "resident", password: str | None = None, **fields) -> AbstractBaseUser:
    """A resident (a Django user). Without ``password`` it gets an unusable one:
    hashing costs about a second, so log in with ``client.force_login``."""
    return get_user_model().objects.create_user(username=username, password=password, **fields)


def grid_make(slug: str = "demo", *, now: datetime = T0, name: str = "", **rules: int) -> Grid:
    """A grid starting at the interval containing ``now`` (default ``T0``)."""
    return grid_create(slug, name or f"Grid {slug}", now, **rules)


def meter_issue(
    grid: Grid,
    public_id: str,
    kind: str = "consumer",
    *,
    owner: AbstractBaseUser | None = None,
    public: bool = False,
    label: str = "",
) -> IssuedMeter:
    """A registered meter together with its plain secret (for signing payloads)."""
    return meter_add(
        grid,
        public_id,
        kind,
        public=public,
        label=label,
        owner_username=owner.get_username() if owner is not None else None,
    )


def meter_make(grid: Grid, public_id: str, kind: str = "consumer", **options) -> Meter:
    """A registered meter (see ``meter_issue`` when the secret is needed)."""
    return meter_issue(grid, public_id, kind, **options).meter


def reading_make(
    meter: Meter,
    interval_start: datetime,
    import_wh: int = 0,
    export_wh: int = 0,
    *,
    seq: int | None = None,
    received_at: datetime | None = None,
    late: bool | None = None,
) -> Reading:
    """Store one reading for ``meter`` (Wh for ``[interval_start, +interval_s)``).

    Cumulative totals continue from the meter's earlier readings; ``seq``
    defaults to the next one; ``late`` defaults to what ingest decides
    (``reading_is_late`` against the grid's current ``settled_through``).
    """
    grid = Grid.objects.get(pk=meter.grid_id)
    earlier = Reading.objects.filter(meter=meter).aggregate(imp=Sum("import_wh"), exp=Sum("export_wh"), seq=Max("seq"))
    return Reading.objects.create(
        meter=meter,
        interval_start=interval_start,
        import_wh=import_wh,
        export_wh=export_wh,
        import_total_wh=(earlier["imp"] or 0) + import_wh,
        export_total_wh=(earlier["exp"] or 0) + export_wh,
        seq=seq if seq is not None else (earlier["seq"] or 0) + 1,
        received_at=received_at or interval_start + timedelta(seconds=grid.interval_s),
        late=late if late is not None else reading_is_late(grid, interval_start),
    )
