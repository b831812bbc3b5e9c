"""Prepaid supply: forecast how long each meter's balance lasts, decide and
send connect / disconnect / low-balance, and the operator's override.

The rules are pure (``meters.prepaid``); this module gathers their inputs in a
few bulk queries and stores and publishes the decisions through
``meters.decisions_bulk`` (after a settlement a whole grid is decided at once)
or, for an operator's override, ``meters.decisions.decision_publish``.

Money in integer µk, energy in Wh, "recent average use" = the average import
of the meter's readings in the last ``RECENT_INTERVALS`` intervals, priced at
the grid's current tariff.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Q, Sum

from utility.audit.services import operator_action_record
from utility.lib.money import div_round_half_up

from .decisions import decision_publish
from .decisions_bulk import CHUNK, MeterSnapshot, decisions_publish_bulk, meters_snapshot
from .models import DecisionState, Grid, Meter, MeterDecision, MeterKind, Reading
from .prepaid import (
    REASON_EXHAUSTED,
    REASON_GRACE,
    REASON_LOW,
    REASON_OPERATOR,
    REASON_PAYMENT_MISSED,
    REASON_RELEASED,
    SupplyInputs,
    average_needed,
    intervals_left,
    supply_decide,
)

RECENT_INTERVALS = 24  # "recent average use" looks back this many intervals
LOW_INTERVALS = 24  # warn when fewer intervals than this are left
_PRODUCER = MeterKind.PRODUCER.value  # a plain str: compared 100,000 times per settlement


class SupplyError(ValueError):
    """A refused supply action (clear, user-facing); nothing was written."""


@dataclass(frozen=True, slots=True)
class MeterForecast:
    """How long a meter's balance lasts at its recent average use."""

    meter_id: int
    public_id: str
    state: str  # the supply state the meter was last told
    balance_uk: int
    avg_cost_uk: int  # per interval, at the current tariff
    intervals_left: int | None  # None: it uses nothing, it never runs out
    seconds_left: int | None

    @property
    def hours_left(self) -> float | None:
        """For display only."""
        return None if self.seconds_left is None else self.seconds_left / 3600


def _chunked(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def avg_costs_uk(grid: Grid, meter_ids: list[int], now: datetime) -> dict[int, int]:
    """Each meter's recent average cost of one interval in µk (absent: no
    readings, so 0): import Wh averaged over its readings of the last
    ``RECENT_INTERVALS`` intervals before ``now``, at the grid's tariff,
    rounded half up once (no intermediate rounding)."""
    since = now - timedelta(seconds=grid.interval_s * RECENT_INTERVALS)
    costs = {}
    # PostgreSQL takes the whole list in one statement; SQLite in chunks.
    for chunk in [meter_ids] if connection.vendor == "postgresql" else _chunked(meter_ids):
        for meter_id, total_wh, count in _import_totals(chunk, since, now):
            costs[meter_id] = div_round_half_up(total_wh * grid.tariff_uk_per_kwh, 1000 * count)
    return costs


def _import_totals(meter_ids: list[int], since: datetime, until: datetime) -> list[tuple[int, int, int]]:
    """``(meter_id, import Wh, readings)`` over ``[since, until)``."""
    if connection.vendor == "postgresql":  # one array parameter, not thousands
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT r.meter_id, SUM(r.import_wh)::bigint, COUNT(*) FROM unnest(%s::bigint[]) AS u(id) "
                "JOIN meters_reading r ON r.meter_id = u.id AND r.interval_start >= %s AND r.interval_start < %s "
                "GROUP BY r.meter_id",
                [meter_ids, since, until],
            )
            return cursor.fetchall()
    readings = Reading.objects.filter(meter_id__in=meter_ids, interval_start__gte=since, interval_start__lt=until)
    return list(readings.values("meter_id").annotate(total=Sum("import_wh"), n=Count("id")).values_list(
        "meter_id", "total", "n"
    ))  # fmt: skip


def _forecast(grid: Grid, row: tuple[int, str, str, int], avg_cost_uk: int) -> MeterForecast:
    meter_id, public_id, state, balance_uk = row
    left = intervals_left(balance_uk, grid.credit_limit_uk, avg_cost_uk)
    seconds = None if left is None else left * grid.interval_s
    return MeterForecast(meter_id, public_id, state, balance_uk, avg_cost_uk, left, seconds)


def meters_forecast(meters: list[Meter], now: datetime) -> dict[int, MeterForecast]:
    """Balance, recent average cost per interval and what it lasts, per meter
    (meters may belong to different grids)."""
    by_grid: dict[int, list[int]] = defaultdict(list)
    for meter in meters:
        by_grid[meter.grid_id].append(meter.pk)
    forecasts = {}
    for grid_id, ids in by_grid.items():
        grid = Grid.objects.get(pk=grid_id)
        costs = avg_costs_uk(grid, ids, now)
        rows = Meter.objects.filter(pk__in=ids).values_list("pk", "public_id", "supply_state", "account__balance_uk")
        for row in rows:
            forecasts[row[0]] = _forecast(grid, row, costs.get(row[0], 0))
    return forecasts


def meters_running_out(grid: Grid, within_hours: int = 24, *, now: datetime) -> list[MeterForecast]:
    """The grid's active consumers and prosumers whose balance (plus credit)
    lasts less than ``within_hours`` at their recent average use, soonest
    first (those already dry lead). For operators: who to call before the cut."""
    if type(within_hours) is not int or within_hours <= 0:
        raise SupplyError(f"within_hours must be a positive whole number, got {within_hours!r}")
    meters = Meter.objects.filter(grid=grid, active=True).exclude(kind=MeterKind.PRODUCER)
    rows = list(meters.values_list("pk", "public_id", "supply_state", "account__balance_uk"))
    costs = avg_costs_uk(grid, [row[0] for row in rows], now)
    forecasts = [_forecast(grid, row, costs.get(row[0], 0)) for row in rows]
    soon = [f for f in forecasts if f.seconds_left is not None and f.seconds_left < within_hours * 3600]
    return sorted(soon, key=lambda f: (f.seconds_left, f.public_id))


def meters_decide(meter_ids: list[int], now: datetime, issued_by: str = "system", *, funded: bool = False) -> int:
    """Decide for each meter now and send what is new; returns how many went out.

    Runs after every settlement (the run's meters) and every funding (the
    funded meter, ``funded=True``: that clears a market cut, see
    ``meters.prepaid``). Safe to repeat: an unchanged state sends nothing, a
    warning is not repeated, and a meter an operator holds is left alone.
    Decisions are made from the locked meter and its current balance
    (``decisions_bulk``); the recent average is computed only for the meters
    whose decision can depend on it.
    """
    snapshots = meters_snapshot(meter_ids)
    grids = Grid.objects.in_bulk({s.grid_id for s in snapshots})
    needed: dict[int, list[int]] = defaultdict(list)
    for snapshot in snapshots:
        if average_needed(_inputs(snapshot, 0, now, funded=funded)):
            needed[snapshot.grid_id].append(snapshot.meter_id)
    costs: dict[int, int] = {}
    for grid_id, ids in needed.items():
        costs.update(avg_costs_uk(grids[grid_id], ids, now))

    def decide(meter: MeterSnapshot) -> tuple[str, str] | None:
        decision = supply_decide(_inputs(meter, costs.get(meter.meter_id, 0), now, funded=funded))
        return None if decision is None else (decision.state, decision.reason)

    return decisions_publish_bulk(meter_ids, decide, issued_by=issued_by, now=now, snapshots=snapshots)


def _inputs(
    meter: MeterSnapshot, avg_cost_uk: int, now: datetime, *, held: bool | None = None, funded: bool = False
) -> SupplyInputs:
    since = meter.overdrawn_since
    reason = meter.last_reason
    return SupplyInputs(
        meter.balance_uk,
        meter.credit_limit_uk,
        avg_cost_uk,
        meter.supply_state,
        meter.never_disconnect or meter.kind == _PRODUCER,
        LOW_INTERVALS,
        reason == REASON_LOW,
        reason == REASON_OPERATOR if held is None else held,
        meter.credit_grace_s,
        None if since is None else max(0, int((now - since).total_seconds())),
        reason == REASON_GRACE,
        reason == REASON_PAYMENT_MISSED,
        funded,
    )


def meter_is_held(meter: Meter) -> bool:
    """True while the market must leave the meter's supply alone: an
    operator's forced state stands (its latest decision), or the prepaid rules
    cut it for exhausted funds (it stays cut until a funding covers the
    reconnect threshold: a contract's deposit does not reconnect it)."""
    return Meter.objects.filter(
        Q(decision_reason=REASON_OPERATOR) | Q(supply_state=DecisionState.DISCONNECT, decision_reason=REASON_EXHAUSTED),
        pk=meter.pk,
    ).exists()


def meter_is_held_by_operator(meter: Meter) -> bool:
    """True while an operator's forced state stands (its latest decision)."""
    return Meter.objects.filter(pk=meter.pk, decision_reason=REASON_OPERATOR).exists()


def _check_operator(reason: str, operator: str) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise SupplyError("a reason is required (it is recorded)")
    if not isinstance(operator, str) or not operator.strip():
        raise SupplyError("the operator's name is required (it is recorded)")


def meter_force_state(meter: Meter, state: str, reason: str, operator: str, now: datetime) -> MeterDecision:
    """An operator tells ``meter`` to ``state`` ("connect"/"disconnect") now.

    The state holds: automatic decisions leave the meter alone until
    ``meter_release``. Recorded twice in one transaction: the signed
    ``MeterDecision`` (reason ``operator``, ``issued_by`` the operator) and the
    audit log with the operator's own words. A meter marked never-disconnect
    cannot be forced off. Raises ``SupplyError``; nothing is written then.
    """
    _check_operator(reason, operator)
    if state not in DecisionState.values:
        raise SupplyError(f"state must be one of {', '.join(DecisionState.values)}, got {state!r}")
    if state == DecisionState.DISCONNECT and meter.never_disconnect:
        raise SupplyError(f"meter {meter.public_id} is marked never-disconnect; it cannot be cut")
    with transaction.atomic():
        try:
            decision = decision_publish(meter, state, REASON_OPERATOR, issued_by=operator, now=now)
        except ValueError as exc:  # e.g. never_disconnect set a moment ago
            raise SupplyError(str(exc)) from exc
        operator_action_record(
            operator,
            "meter_force_state",
            f"meter:{meter.public_id}",
            now,
            reason,
            {"state": state, "seq": decision.seq},
        )
    return decision


def meter_release(meter: Meter, reason: str, operator: str, now: datetime) -> int:
    """End an operator's hold: the automatic rules decide again at once.

    A decision is always sent (reason ``released`` when the rules would keep
    the state), so the hold visibly ends. Recorded in the audit log. Raises
    ``SupplyError`` when the meter is not held; returns the decisions sent (1).
    """
    _check_operator(reason, operator)
    costs = avg_costs_uk(Grid.objects.get(pk=meter.grid_id), [meter.pk], now)

    def decide(snapshot: MeterSnapshot) -> tuple[str, str]:
        if snapshot.last_reason != REASON_OPERATOR:
            raise SupplyError(f"meter {snapshot.public_id} is not held by an operator")
        decision = supply_decide(_inputs(snapshot, costs.get(snapshot.meter_id, 0), now, held=False))
        return (snapshot.supply_state, REASON_RELEASED) if decision is None else (decision.state, decision.reason)

    with transaction.atomic():
        sent = decisions_publish_bulk([meter.pk], decide, issued_by=operator, now=now)
        if not sent:
            raise SupplyError(f"meter {meter.public_id} is not active")
        operator_action_record(operator, "meter_release", f"meter:{meter.public_id}", now, reason, {})
    return sent
