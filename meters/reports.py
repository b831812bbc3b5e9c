"""Reads of meters for people: residents' pages, the grid picture, operators'
ingest health, and the REST API. (Selectors; kept apart from ``selectors.py``,
which the platform's own processes use.)

Who may see what is decided here, once (``meter_access``): the owner and staff
see a meter whole; anyone signed in sees a public meter's id, label, kind and
balance; of anyone else's meter only its id is known (it can still be funded).
Energy in Wh, money in µk, times UTC-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.db.models import Count, Max, Q, QuerySet, Sum

from utility.lib.timeutil import interval_floor

from .models import Grid, Meter, MeterDecision, MeterKind, Reading, RejectedReading


class Access(StrEnum):
    FULL = "full"  # the owner, or staff
    PUBLIC = "public"  # a public meter (a street light): id, label, kind, balance
    FUND_ONLY = "fund_only"  # someone else's private meter: its id, to fund it


@dataclass(frozen=True, slots=True)
class MeterAccess:
    meter: Meter
    access: Access

    @property
    def full(self) -> bool:
        return self.access == Access.FULL

    @property
    def shows_balance(self) -> bool:
        return self.access in (Access.FULL, Access.PUBLIC)


def access_of(meter: Meter, user) -> Access:
    """What ``user`` may see of ``meter``."""
    if user.is_staff or (meter.owner_id is not None and meter.owner_id == user.pk):
        return Access.FULL
    return Access.PUBLIC if meter.public else Access.FUND_ONLY


def meter_access(public_id: str, user) -> MeterAccess | None:
    """The meter called ``public_id`` and what ``user`` may see of it, or None
    when there is no such meter."""
    meter = meter_find(public_id)
    if meter is None:
        return None
    return MeterAccess(meter, access_of(meter, user))


def meter_find(public_id: str) -> Meter | None:
    """The meter called ``public_id`` with its grid, account and owner (for
    staff: no access check here)."""
    return Meter.objects.select_related("grid", "account", "owner").filter(public_id=public_id).first()


def meters_of_owner(user) -> QuerySet[Meter]:
    """The resident's own meters, by id (inactive ones too: their history stays)."""
    return Meter.objects.filter(owner=user).select_related("grid", "account").order_by("public_id")


def meters_public_search(query: str, limit: int = 20) -> list[Meter]:
    """Active public meters (street lights) whose id or label contains ``query``
    (case-insensitive); an empty query lists the first ones."""
    meters = Meter.objects.filter(public=True, active=True).select_related("account", "grid")
    query = (query or "").strip()
    if query:
        meters = meters.filter(Q(public_id__icontains=query) | Q(label__icontains=query))
    return list(meters.order_by("public_id")[:limit])


def meters_list(filters: dict | None = None) -> QuerySet[Meter]:
    """Every meter, for operators: ``grid`` (slug), ``kind``, ``supply_state``,
    ``public``, ``active``, ``never_disconnect``, ``owner`` (username) and ``search``
    (id or label) narrow it."""
    filters = filters or {}
    meters = Meter.objects.select_related("grid", "account", "owner").order_by("public_id")
    exact = {
        "grid": "grid__slug",
        "kind": "kind",
        "supply_state": "supply_state",
        "public": "public",
        "active": "active",
        "never_disconnect": "never_disconnect",
        "owner": "owner__username",
    }
    for name, lookup in exact.items():
        if filters.get(name) is not None:
            meters = meters.filter(**{lookup: filters[name]})
    if filters.get("search"):
        meters = meters.filter(Q(public_id__icontains=filters["search"]) | Q(label__icontains=filters["search"]))
    return meters


def meter_readings(meter_id: int, since: datetime | None = None, until: datetime | None = None) -> QuerySet[Reading]:
    """The meter's readings, newest interval first, in ``[since, until)``."""
    readings = Reading.objects.filter(meter_id=meter_id)
    if since is not None:
        readings = readings.filter(interval_start__gte=since)
    if until is not None:
        readings = readings.filter(interval_start__lt=until)
    return readings.order_by("-interval_start")


def meter_decisions(meter_id: int) -> QuerySet[MeterDecision]:
    """Every decision sent to the meter, newest first (who or what decided, why)."""
    return MeterDecision.objects.filter(meter_id=meter_id).order_by("-seq")


def readings_by_interval(meter_ids: list[int], since: datetime, until: datetime) -> dict[datetime, tuple[int, int]]:
    """``interval_start -> (import_wh, export_wh)`` summed over ``meter_ids``
    for the readings in ``[since, until)``."""
    rows = (
        Reading.objects.filter(meter_id__in=meter_ids, interval_start__gte=since, interval_start__lt=until)
        .values("interval_start")
        .annotate(imp=Sum("import_wh"), exp=Sum("export_wh"))
        .values_list("interval_start", "imp", "exp")
    )
    return {start: (imp or 0, exp or 0) for start, imp, exp in rows}


@dataclass(frozen=True, slots=True)
class GridPicture:
    """A grid's meters with their numbers for one interval (the latest reported)."""

    grid: Grid
    interval_start: datetime | None
    meters: list[Meter]
    readings: dict[int, tuple[int, int]]  # meter id -> (import_wh, export_wh)
    meter_count: int  # all active meters (``meters`` may be cut at the limit)


def grid_picture(grid: Grid, now: datetime, limit: int = 120) -> GridPicture:
    """The grid's active meters (producers first, then by id, at most ``limit``)
    and their readings for the latest interval, before ``now``, that has any."""
    meters_qs = Meter.objects.filter(grid=grid, active=True).select_related("account")
    meter_count = meters_qs.count()
    meters = sorted(
        meters_qs.order_by("public_id")[:limit],
        key=lambda m: (m.kind != MeterKind.PRODUCER, m.kind != MeterKind.PROSUMER, m.public, m.public_id),
    )
    current = interval_floor(now, grid.interval_s)
    # The ingest keeps each meter's latest interval; readings stored another
    # way (imports, tests) are found among the drawn meters' own.
    latest = Meter.objects.filter(grid=grid, active=True, last_interval_start__lte=current).aggregate(
        latest=Max("last_interval_start")
    )["latest"]
    if latest is None and meters:
        latest = Reading.objects.filter(meter__in=[m.pk for m in meters], interval_start__lte=current).aggregate(
            latest=Max("interval_start")
        )["latest"]
    readings: dict[int, tuple[int, int]] = {}
    if latest is not None:
        rows = Reading.objects.filter(meter__in=[m.pk for m in meters], interval_start=latest)
        readings = {mid: (imp, exp) for mid, imp, exp in rows.values_list("meter_id", "import_wh", "export_wh")}
    return GridPicture(grid, latest, meters, readings, meter_count)


@dataclass(frozen=True, slots=True)
class IngestHealth:
    """How the ingest keeps up lately (``meters.metrics.ingest_stats`` has the
    totals since the start)."""

    window: timedelta
    accepted: int  # readings received in the window (at least; see ``ingest_health``)
    per_minute: float  # for display
    lag_p50_s: int | None  # from an interval's end to its reading's arrival
    lag_max_s: int | None
    late: int  # of those, received after their interval was settled
    rejected_by_reason: list[tuple[str, int]]  # in the window, most first


def ingest_health(now: datetime, window: timedelta = timedelta(hours=1), sample: int = 5000) -> IngestHealth:
    """Ingest rate, lag and rejections over the last ``window``, for operators.

    Measured on at most the newest ``sample`` readings (by id: an index scan
    that never touches the rest of a big table). When all of them arrived
    within the window, the rate is taken over the span they cover instead."""
    since = now - window
    newest = Reading.objects.order_by("-pk").values_list(
        "received_at", "interval_start", "meter__grid__interval_s", "late"
    )[:sample]
    rows = [row for row in newest if since <= row[0] <= now]
    span_s = window.total_seconds()
    if len(rows) == sample:
        span_s = max(1.0, (now - rows[-1][0]).total_seconds())
    lags = sorted(
        max(0, int((got - (start + timedelta(seconds=step))).total_seconds())) for got, start, step, _ in rows
    )
    rejected = (
        RejectedReading.objects.filter(received_at__gte=since, received_at__lte=now)
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")
        .values_list("reason", "n")
    )
    return IngestHealth(
        window=window,
        accepted=len(rows),
        per_minute=len(rows) / (span_s / 60),
        lag_p50_s=lags[len(lags) // 2] if lags else None,
        lag_max_s=lags[-1] if lags else None,
        late=sum(1 for row in rows if row[3]),
        rejected_by_reason=list(rejected),
    )


def grids_list() -> QuerySet[Grid]:
    """Every grid, by slug."""
    return Grid.objects.order_by("slug")


def grid_for_slug(slug: str) -> Grid | None:
    return Grid.objects.filter(slug=slug).first()
