"""Reads of settlements for people: a meter's lines per interval with its
fee share and the interval's loss, a grid's recent intervals, alerts, and the
REST API's filtered lists. (Selectors; kept apart from ``selectors.py``,
which the engine's own processes use.)

Money in µk, energy in Wh. A line's **fee share** is display arithmetic over
integers, rounded half up once: the utility's fee comes out of the pool, which
the consumers' payments fill and the producers are paid from, so

* on the import side it is the part of the payment that went to the fee:
  ``fee × debit / pool``;
* on the export side it is what the fee cut from the earnings:
  ``fee × export / the interval's export`` (only when anything was exported);

a prosumer's line has both, summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet, Sum

from meters.models import Grid, Meter
from utility.lib.money import div_round_half_up
from utility.lib.timeutil import interval_floor

from .models import RunStatus, SettlementLine, SettlementRun


def fee_share_uk(*, debit_uk: int, export_wh: int, fee_uk: int, pool_uk: int, run_export_wh: int) -> int:
    """The line's share of its interval's fee (see the module docstring), µk."""
    share = 0
    if debit_uk > 0 and pool_uk > 0:
        share += div_round_half_up(fee_uk * debit_uk, pool_uk)
    if export_wh > 0 and run_export_wh > 0:
        share += div_round_half_up(fee_uk * export_wh, run_export_wh)
    return share


@dataclass(frozen=True, slots=True)
class LineRow:
    """One meter's line of one settled interval, with what the interval did."""

    run_id: int
    interval_start: datetime
    interval_end: datetime
    import_wh: int
    export_wh: int
    debit_uk: int  # paid
    credit_uk: int  # earned
    fee_share_uk: int
    loss_wh: int  # the whole grid's, that interval
    loss_bp: int | None
    alerts: list[str]


LINE_FIELDS = (
    "run_id",
    "run__interval_start",
    "run__interval_end",
    "import_wh",
    "export_wh",
    "debit_uk",
    "credit_uk",
    "run__fee_uk",
    "run__pool_uk",
    "run__export_wh",
    "run__loss_wh",
    "run__loss_bp",
    "run__alerts",
)


def line_row(values: tuple) -> LineRow:
    run_id, start, end, imp, exp, debit, credit, fee, pool, run_exp, loss_wh, loss_bp, alerts = values
    share = fee_share_uk(debit_uk=debit, export_wh=exp, fee_uk=fee, pool_uk=pool, run_export_wh=run_exp)
    return LineRow(run_id, start, end, imp, exp, debit, credit, share, loss_wh, loss_bp, list(alerts or []))


def meter_lines(
    meter_id: int, since: datetime | None = None, until: datetime | None = None, *, newest_first: bool = True
) -> QuerySet:
    """The meter's lines in ``[since, until)`` as ``LINE_FIELDS`` tuples
    (``line_rows`` and ``line_row`` turn them into ``LineRow``s)."""
    lines = SettlementLine.objects.filter(meter_id=meter_id)
    if since is not None:
        lines = lines.filter(run__interval_start__gte=since)
    if until is not None:
        lines = lines.filter(run__interval_start__lt=until)
    return lines.order_by("-run__interval_start" if newest_first else "run__interval_start").values_list(*LINE_FIELDS)


def line_rows(values: list[tuple]) -> list[LineRow]:
    return [line_row(v) for v in values]


def lines_of_meters(meter_ids: list[int], filters: dict | None = None) -> QuerySet[SettlementLine]:
    """Lines of the given meters (a resident's), newest first; ``meter``
    (public id), ``since`` and ``until`` narrow them."""
    filters = filters or {}
    lines = SettlementLine.objects.filter(meter_id__in=meter_ids).select_related("run__grid", "meter")
    if filters.get("meter"):
        lines = lines.filter(meter__public_id=filters["meter"])
    if filters.get("since"):
        lines = lines.filter(run__interval_start__gte=filters["since"])
    if filters.get("until"):
        lines = lines.filter(run__interval_start__lt=filters["until"])
    return lines.order_by("-run__interval_start", "meter__public_id")


def line_fee_share_uk(line: SettlementLine) -> int:
    """``fee_share_uk`` of a line with its run loaded."""
    run = line.run
    return fee_share_uk(
        debit_uk=line.debit_uk,
        export_wh=line.export_wh,
        fee_uk=run.fee_uk,
        pool_uk=run.pool_uk,
        run_export_wh=run.export_wh,
    )


def money_by_interval(meter_ids: list[int], since: datetime, until: datetime) -> dict[datetime, tuple[int, int]]:
    """``interval_start -> (paid_uk, earned_uk)`` summed over ``meter_ids``."""
    # The runs are found by (grid, interval) first: an index range, not a scan of every run.
    grids = Meter.objects.filter(pk__in=meter_ids).values("grid_id")
    rows = (
        SettlementLine.objects.filter(
            meter_id__in=meter_ids,
            run__grid_id__in=grids,
            run__status=RunStatus.SETTLED,
            run__interval_start__gte=since,
            run__interval_start__lt=until,
        )
        .values("run__interval_start")
        .annotate(paid=Sum("debit_uk"), earned=Sum("credit_uk"))
        .values_list("run__interval_start", "paid", "earned")
    )
    return {start: (paid or 0, earned or 0) for start, paid, earned in rows}


def runs_of_grid(grid: Grid, limit: int = 48) -> list[SettlementRun]:
    """The grid's latest settled intervals, oldest first (for a chart)."""
    runs = SettlementRun.objects.filter(grid=grid, status=RunStatus.SETTLED).order_by("-interval_start")[:limit]
    return list(reversed(runs))


def runs_list(filters: dict | None = None) -> QuerySet[SettlementRun]:
    """Settlement runs for operators, newest first; ``grid`` (slug), ``status``,
    ``since``, ``until`` and ``alerts`` (only runs that raised one) narrow them."""
    filters = filters or {}
    runs = SettlementRun.objects.select_related("grid").order_by("-interval_start", "grid__slug")
    if filters.get("grid"):
        runs = runs.filter(grid__slug=filters["grid"])
    if filters.get("status"):
        runs = runs.filter(status=filters["status"])
    if filters.get("since"):
        runs = runs.filter(interval_start__gte=filters["since"])
    if filters.get("until"):
        runs = runs.filter(interval_start__lt=filters["until"])
    if filters.get("alerts"):
        runs = runs.exclude(alerts=[])
    return runs


def run_get(run_id: int) -> SettlementRun | None:
    return SettlementRun.objects.select_related("grid").filter(pk=run_id).first()


def run_lines(run_id: int) -> QuerySet[SettlementLine]:
    """A run's lines by meter id (the run may have 100,000: paginate)."""
    return SettlementLine.objects.filter(run_id=run_id).select_related("meter", "run").order_by("meter__public_id")


def runs_with_alerts(since: datetime, grid: Grid | None = None) -> QuerySet[SettlementRun]:
    """Settled runs since ``since`` that raised an alert (loss above the
    threshold, import above export), newest first."""
    runs = SettlementRun.objects.filter(status=RunStatus.SETTLED, interval_start__gte=since).exclude(alerts=[])
    if grid is not None:
        runs = runs.filter(grid=grid)
    return runs.select_related("grid").order_by("-interval_start")


def runs_stuck(now: datetime) -> list[tuple[Grid, datetime | None]]:
    """Grids whose settlement is behind: an interval that ended more than one
    interval plus the grace ago is not settled. ``(grid, settled_through)``."""
    behind = []
    for grid in Grid.objects.order_by("slug"):
        due_before = interval_floor(now - timedelta(seconds=grid.settlement_grace_s), grid.interval_s)
        if due_before - timedelta(seconds=grid.interval_s) > (grid.settled_through or grid.started_at):
            behind.append((grid, grid.settled_through))
    return behind
