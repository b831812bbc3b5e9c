"""What the pages show, built from the apps' selectors: plain dataclasses and
chart series. Money stays integer µk and energy integer Wh all the way to the
template (``web_format`` filters) and the charts (the browser scales them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache

from meters.models import DecisionState, Meter, MeterKind
from meters.reports import Access, access_of, readings_by_interval
from meters.supply import LOW_INTERVALS, MeterForecast, meters_forecast
from settlement.reports import LineRow, line_rows, meter_lines, money_by_interval
from utility.lib.timeutil import interval_floor

CONNECTED, DISCONNECTED, LOW = "connected", "disconnected", "low"
CHART_CACHE_S = 3600


def meter_state(supply_state: str, forecast: MeterForecast | None, kind: str) -> str:
    """``disconnected`` when the meter was told so; ``low`` when a consumer's
    balance lasts fewer than ``LOW_INTERVALS`` intervals; else ``connected``."""
    if supply_state == DecisionState.DISCONNECT:
        return DISCONNECTED
    left = forecast.intervals_left if forecast is not None else None
    if kind != MeterKind.PRODUCER and left is not None and left < LOW_INTERVALS:
        return LOW
    return CONNECTED


@dataclass(frozen=True, slots=True)
class MeterCard:
    public_id: str
    label: str
    kind: str
    public: bool
    active: bool
    grid_slug: str
    state: str
    balance_uk: int
    avg_cost_uk: int  # per interval, recent average
    hours_left: int | None  # whole hours the balance lasts; None: it never runs out


def meter_cards(meters: list[Meter], now: datetime) -> list[MeterCard]:
    """Each meter with its state, balance and how long it lasts."""
    forecasts = meters_forecast(meters, now) if meters else {}
    cards = []
    for meter in meters:
        forecast = forecasts.get(meter.pk)
        seconds = forecast.seconds_left if forecast is not None else None
        cards.append(
            MeterCard(
                public_id=meter.public_id,
                label=meter.label,
                kind=meter.kind,
                public=meter.public,
                active=meter.active,
                grid_slug=meter.grid.slug,
                state=meter_state(meter.supply_state, forecast, meter.kind),
                balance_uk=forecast.balance_uk if forecast is not None else meter.account.balance_uk,
                avg_cost_uk=forecast.avg_cost_uk if forecast is not None else 0,
                hours_left=None if seconds is None else seconds // 3600,
            )
        )
    return cards


def hourly_chart(meters: list[Meter], now: datetime, days: int = 7) -> dict:
    """The last ``days`` days, hour by hour: import and export (Wh), paid and
    earned (µk), summed over ``meters`` (loaded with their grid). Hours
    without data are zeros.

    Cached until its data can change: the key holds the meters' latest
    reported interval (the ingest moves it), their grids' settled-through
    (each settlement moves it; a late reading is settled then) and the hour."""
    end = interval_floor(now, 3600)
    if not meters:
        return _hourly_series({}, {}, end, days)
    marker = (
        sorted(m.pk for m in meters),
        max((m.last_interval_start for m in meters if m.last_interval_start), default=None),
        sorted(str(m.grid.settled_through) for m in meters),
        end,
        days,
    )
    key = "web:chart:" + hashlib.sha256(repr(marker).encode()).hexdigest()
    chart = cache.get(key)
    if chart is None:
        ids, start = [m.pk for m in meters], end - timedelta(days=days)
        chart = _hourly_series(readings_by_interval(ids, start, end), money_by_interval(ids, start, end), end, days)
        cache.set(key, chart, CHART_CACHE_S)
    return chart


def _hourly_series(energy: dict, money: dict, end: datetime, days: int) -> dict:
    start = end - timedelta(days=days)
    hours = [start + timedelta(hours=h) for h in range(days * 24)]
    by_hour: dict[datetime, list[int]] = {hour: [0, 0, 0, 0] for hour in hours}
    for moment, (imp, exp) in energy.items():
        bucket = by_hour.get(interval_floor(moment, 3600))
        if bucket is not None:
            bucket[0] += imp
            bucket[1] += exp
    for moment, (paid, earned) in money.items():
        bucket = by_hour.get(interval_floor(moment, 3600))
        if bucket is not None:
            bucket[2] += paid
            bucket[3] += earned
    return {
        "labels": [f"{hour:%a %H}:00" for hour in hours],
        "import_wh": [by_hour[h][0] for h in hours],
        "export_wh": [by_hour[h][1] for h in hours],
        "paid_uk": [by_hour[h][2] for h in hours],
        "earned_uk": [by_hour[h][3] for h in hours],
    }


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """One interval on the meter page: what the meter reported for it, and
    the settlement line of that interval (absent: not settled yet, or the
    meter had nothing to settle in it)."""

    interval_start: datetime
    reported_import_wh: int | None
    reported_export_wh: int | None
    late: bool
    settled_in: datetime | None
    line: LineRow | None


def interval_rows(meter: Meter, readings: list, until: datetime | None) -> list[IntervalRow]:
    """Join a page of readings (newest first) with the meter's lines over the
    same intervals; lines in the window without a reading (only late energy)
    get a row of their own. ``until`` is the window's exclusive end (None: the
    first page, open-ended)."""
    if not readings:
        lines = line_rows(list(meter_lines(meter.pk)[:24]))
        return [IntervalRow(ln.interval_start, None, None, False, None, ln) for ln in lines]
    since = readings[-1].interval_start
    lines = {ln.interval_start: ln for ln in line_rows(list(meter_lines(meter.pk, since=since, until=until)))}
    rows = {
        r.interval_start: IntervalRow(
            r.interval_start, r.import_wh, r.export_wh, r.late, r.settled_in, lines.get(r.interval_start)
        )
        for r in readings
    }
    for start, line in lines.items():
        rows.setdefault(start, IntervalRow(start, None, None, False, None, line))
    return [rows[start] for start in sorted(rows, reverse=True)]


def runs_chart(runs: list) -> dict:
    """A grid's recent intervals (oldest first): import, export, loss (Wh) and
    fee, pool (µk) per interval."""
    return {
        "labels": [run.interval_start.strftime("%a %H:%M") for run in runs],
        "import_wh": [run.import_wh for run in runs],
        "export_wh": [run.export_wh for run in runs],
        "loss_wh": [run.loss_wh for run in runs],
        "fee_uk": [run.fee_uk for run in runs],
        "pool_uk": [run.pool_uk for run in runs],
    }


@dataclass(frozen=True, slots=True)
class GridTile:
    """One meter on the grid picture."""

    public_id: str
    label: str
    icon: str  # "solar", "house" or "light"
    import_wh: int | None  # in the picture's interval; None: no reading
    export_wh: int | None
    balance_uk: int | None  # None: not the viewer's to see
    state: str | None  # connected / disconnected; None: not the viewer's to see
    mine: bool


def grid_tiles(meters: list[Meter], readings: dict[int, tuple[int, int]], user) -> list[GridTile]:
    """Producers as solar panels, consumers as houses, public consumers as
    street lights. Every meter's energy is shown (the grid's flows are the
    community's business); balance and state only where the viewer may see
    them (``meters.reports.access_of``)."""
    tiles = []
    for meter in meters:
        access = access_of(meter, user)
        visible = access in (Access.FULL, Access.PUBLIC)
        icon = (
            "solar" if meter.kind in (MeterKind.PRODUCER, MeterKind.PROSUMER) else "light" if meter.public else "house"
        )
        imp, exp = readings.get(meter.pk, (None, None))
        tiles.append(
            GridTile(
                public_id=meter.public_id,
                label=meter.label,
                icon=icon,
                import_wh=imp,
                export_wh=exp,
                balance_uk=meter.account.balance_uk if visible else None,
                state=(DISCONNECTED if meter.supply_state == DecisionState.DISCONNECT else CONNECTED)
                if visible
                else None,
                mine=meter.owner_id is not None and meter.owner_id == user.pk,
            )
        )
    return tiles
