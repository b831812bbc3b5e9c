"""Decide and send connect / disconnect / low-balance for a set of meters.

The rules are pure (``meters.prepaid``); this module gathers their inputs in a
few bulk queries and hands each resulting decision to ``decision_publish``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Sum

from utility.lib.money import div_round_half_up

from .models import Meter, MeterDecision, MeterKind, Reading
from .prepaid import REASON_LOW, SupplyInputs, intervals_left, supply_decide

RECENT_INTERVALS = 24  # "recent average use" looks back this many intervals
LOW_INTERVALS = 24  # warn when fewer intervals than this are left


@dataclass(frozen=True, slots=True)
class MeterForecast:
    meter_id: int
    balance_uk: int
    avg_cost_uk: int  # per interval
    intervals_left: int | None
    hours_left: float | None  # display only


def _avg_import_wh(meter_ids: list[int], since: datetime) -> dict[int, int]:
    rows = (
        Reading.objects.filter(meter_id__in=meter_ids, interval_start__gte=since)
        .values("meter_id")
        .annotate(total=Sum("import_wh"), n=Count("id"))
    )
    return {r["meter_id"]: r["total"] // max(1, r["n"]) for r in rows}


def meters_forecast(meters: list[Meter], now: datetime) -> dict[int, MeterForecast]:
    """Balance, recent average cost per interval and what it lasts, per meter."""
    if not meters:
        return {}
    interval_s = meters[0].grid.interval_s
    since = now - timedelta(seconds=interval_s * RECENT_INTERVALS)
    avg_wh = _avg_import_wh([m.pk for m in meters], since)
    forecasts = {}
    for meter in meters:
        avg_cost = div_round_half_up(avg_wh.get(meter.pk, 0) * meter.grid.tariff_uk_per_kwh, 1000)
        left = intervals_left(meter.account.balance_uk, meter.grid.credit_limit_uk, avg_cost)
        hours = None if left is None else left * meter.grid.interval_s / 3600
        forecasts[meter.pk] = MeterForecast(meter.pk, meter.account.balance_uk, avg_cost, left, hours)
    return forecasts


def _last_reasons(meter_ids: list[int]) -> dict[int, str]:
    latest = MeterDecision.objects.filter(meter_id__in=meter_ids).values("meter_id").annotate(seq=Max("seq"))
    keys = {(r["meter_id"], r["seq"]) for r in latest}
    rows = MeterDecision.objects.filter(meter_id__in={m for m, _ in keys}).values_list("meter_id", "seq", "reason")
    return {meter_id: reason for meter_id, seq, reason in rows if (meter_id, seq) in keys}


def meters_decide(meter_ids: list[int], now: datetime, issued_by: str = "system") -> list[MeterDecision]:
    """Compute each meter's decision and publish the ones that say something new."""
    from .decisions import decision_publish  # B1 lands decisions.py in parallel

    meters = list(Meter.objects.filter(pk__in=meter_ids, active=True).select_related("grid", "account"))
    sent = []
    by_grid: dict[int, list[Meter]] = {}
    for meter in meters:
        by_grid.setdefault(meter.grid_id, []).append(meter)
    last_reasons = _last_reasons([m.pk for m in meters])
    for grid_meters in by_grid.values():
        forecasts = meters_forecast(grid_meters, now)
        for meter in grid_meters:
            forecast = forecasts[meter.pk]
            decision = supply_decide(
                SupplyInputs(
                    balance_uk=forecast.balance_uk,
                    credit_limit_uk=meter.grid.credit_limit_uk,
                    avg_cost_uk=forecast.avg_cost_uk,
                    current_state=meter.supply_state,
                    exempt=meter.never_disconnect or meter.kind == MeterKind.PRODUCER,
                    low_intervals=LOW_INTERVALS,
                )
            )
            if decision is None or (decision.reason == REASON_LOW and last_reasons.get(meter.pk) == REASON_LOW):
                continue
            sent.append(decision_publish(meter, decision.state, decision.reason, issued_by=issued_by, now=now))
    return sent
