"""Reads of settlements."""

from __future__ import annotations

from django.db.models import QuerySet

from meters.models import Grid

from .models import SettlementLine, SettlementRun


def runs_recent(grid: Grid, limit: int = 24) -> QuerySet[SettlementRun]:
    """The grid's latest settled intervals, newest first."""
    return SettlementRun.objects.filter(grid=grid, status="settled").order_by("-interval_start")[:limit]


def lines_for_meter(meter_id: int, limit: int = 48) -> QuerySet[SettlementLine]:
    return (
        SettlementLine.objects.filter(meter_id=meter_id).select_related("run").order_by("-run__interval_start")[:limit]
    )
