"""Close intervals: load readings, call the pure engine, write the ledger.

``settlement_close`` is the one writer. It runs inside one database
transaction: lock the grid row, claim the run with a conditional UPDATE (so two
workers never both settle it), claim the unsettled readings with one
``UPDATE ... RETURNING`` (a reading committed a moment later stays unsettled and
goes to the next interval: nothing lost, nothing counted twice), settle them
purely, and post one balanced ledger transaction keyed by grid and interval.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction

from marketplace.selectors import contracts_settling, voltages_settled_in
from marketplace.services import DeliveryOutcome, deliveries_record
from meters.models import Grid
from meters.services import grid_mark_settled
from settlement.domain import GridRules, IntervalSettlement, MeterUsage, settle_interval
from settlement.domain.contracts import ContractLine, ContractTerms, Voltage, settle_contracts
from utility.ledger.models import Account
from utility.ledger.services import transaction_post
from utility.lib.timeutil import ensure_utc, format_utc, is_aligned

from .models import RunStatus, SettlementLine, SettlementRun


class SettlementRefused(Exception):
    """The interval cannot be settled now; nothing was written."""


@dataclass(frozen=True, slots=True)
class Closed:
    run: SettlementRun
    settled_now: bool  # False: it was already settled (a no-op)


def grid_rules(grid: Grid) -> GridRules:
    return GridRules(
        tariff_uk_per_kwh=grid.tariff_uk_per_kwh,
        fee_fixed_uk=grid.fee_fixed_uk,
        fee_bp=grid.fee_bp,
        loss_alert_bp=grid.loss_alert_bp,
    )


def next_open_interval(grid: Grid) -> datetime:
    return grid.settled_through or grid.started_at


def due_intervals(grid: Grid, now: datetime) -> Iterator[datetime]:
    """Starts of the intervals whose end plus the grace has passed, oldest first."""
    step = timedelta(seconds=grid.interval_s)
    grace = timedelta(seconds=grid.settlement_grace_s)
    start = next_open_interval(grid)
    while start + step + grace <= now:
        yield start
        start += step


def _check_interval(grid: Grid, start: datetime, now: datetime) -> None:
    if not is_aligned(start, grid.interval_s):
        raise SettlementRefused(f"{format_utc(start)} is not aligned to the grid's {grid.interval_s} s intervals")
    if start < grid.started_at:
        raise SettlementRefused(f"{format_utc(start)} is before the grid started ({format_utc(grid.started_at)})")
    due_at = start + timedelta(seconds=grid.interval_s + grid.settlement_grace_s)
    if due_at > now:
        raise SettlementRefused(f"{format_utc(start)} is not due until {format_utc(due_at)} (end plus grace)")
    open_from = next_open_interval(grid)
    if start > open_from:
        raise SettlementRefused(f"earlier interval {format_utc(open_from)} is still open: settle in order")


def settlement_close(grid_id: int, interval_start: datetime, now: datetime) -> Closed:
    """Settle ``[interval_start, +interval_s)`` of a grid exactly once.

    Refuses (``SettlementRefused``) an unaligned, undue or out-of-order interval.
    An interval already settled is a no-op that returns its run.
    """
    interval_start, now = ensure_utc(interval_start), ensure_utc(now)
    with transaction.atomic():
        grid = Grid.objects.select_for_update().get(pk=grid_id)
        interval_end = interval_start + timedelta(seconds=grid.interval_s)
        existing = SettlementRun.objects.filter(grid=grid, interval_start=interval_start).first()
        if existing is not None and existing.status == RunStatus.SETTLED:
            return Closed(existing, settled_now=False)
        _check_interval(grid, interval_start, now)
        run, _ = SettlementRun.objects.get_or_create(
            grid=grid, interval_start=interval_start, defaults={"interval_end": interval_end}
        )
        # The claim: only one caller turns this row from open to settled.
        claimed = SettlementRun.objects.filter(pk=run.pk, status=RunStatus.OPEN).update(
            status=RunStatus.SETTLED, settled_at=now
        )
        if not claimed:
            run.refresh_from_db()
            return Closed(run, settled_now=False)
        _batch_memory()
        carry_in_uk = Account.objects.select_for_update().get(pk=grid.pool_account_id).balance_uk
        usages, accounts, meter_pks, late_count = _claim_readings(grid, interval_start, interval_end)
        usages, contract_legs = _contracts_first(grid, interval_start, usages, now)
        result = settle_interval(usages, grid_rules(grid), carry_in_uk)
        txn = _post_ledger(grid, interval_start, result, accounts, contract_legs)
        _write_lines(run.pk, result, meter_pks)
        _record_run(run, grid, result, txn, late_count, now)
        grid_mark_settled(grid.pk, interval_end)
    return Closed(run, settled_now=True)


# A settlement is one large batch: the claim joins every reading with its
# meter, the ledger locks and updates every account. With PostgreSQL's default
# 4 MB per sort or hash, a grid of a million meters spills those joins to disk
# in 16 batches and then touches the tables in scattered order, several times
# slower (bench/settlement.py). SET LOCAL: only until this transaction ends.
SETTLEMENT_WORK_MEM = "256MB"


def _batch_memory() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('work_mem', %s, true)", [SETTLEMENT_WORK_MEM])


def _claim_readings(
    grid: Grid, start: datetime, end: datetime
) -> tuple[list[MeterUsage], dict[str, int], dict[str, int], int]:
    """Mark every unsettled reading of the grid up to this interval as settled
    here, and sum them per meter (late readings join the interval's own).

    One ``UPDATE ... RETURNING`` claims them (a reading committed a moment
    later stays unsettled for the next interval) and brings each meter's
    public id and account along, so nothing else is read. Returns the usages,
    meter id → account id, meter id → meter pk, and the late readings claimed.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE meters_reading r SET settled_in = %s FROM meters_meter m "
                "WHERE m.grid_id = %s AND r.meter_id = m.id AND r.settled_in IS NULL AND r.interval_start < %s "
                "RETURNING r.meter_id, m.public_id, m.account_id, r.import_wh, r.export_wh, r.late",
                [start, grid.pk, end],
            )
            rows = cursor.fetchall()
        else:
            rows = _claim_readings_portable(cursor, grid, start, end)
    late_count = sum(1 for row in rows if row[5])
    if len({row[0] for row in rows}) != len(rows):
        rows = _sum_per_meter(rows)
    usages = [MeterUsage(public_id, import_wh, export_wh) for _, public_id, _, import_wh, export_wh, _ in rows]
    accounts = {public_id: account_id for _, public_id, account_id, _, _, _ in rows}
    meter_pks = {public_id: meter_pk for meter_pk, public_id, _, _, _, _ in rows}
    return usages, accounts, meter_pks, late_count


def _claim_readings_portable(cursor, grid: Grid, start: datetime, end: datetime) -> list[tuple]:
    """The same claim where RETURNING cannot name a joined table (SQLite, the
    embedded default): claim the readings, then look their meters up."""
    cursor.execute(
        "UPDATE meters_reading SET settled_in = %s WHERE settled_in IS NULL AND interval_start < %s "
        "AND meter_id IN (SELECT id FROM meters_meter WHERE grid_id = %s) "
        "RETURNING meter_id, import_wh, export_wh, late",
        [start, end, grid.pk],
    )
    claimed = cursor.fetchall()
    cursor.execute("SELECT id, public_id, account_id FROM meters_meter WHERE grid_id = %s", [grid.pk])
    meters = {pk: (public_id, account_id) for pk, public_id, account_id in cursor.fetchall()}
    return [(pk, *meters[pk], import_wh, export_wh, late) for pk, import_wh, export_wh, late in claimed]


def _sum_per_meter(rows: list[tuple]) -> list[tuple]:
    """One row per meter: a late reading adds to the meter's other readings.
    (Rare, so summed here only when it happens, not by a GROUP BY every time.)"""
    summed: dict[int, list] = {}
    for meter_pk, public_id, account_id, import_wh, export_wh, late in rows:
        total = summed.get(meter_pk)
        if total is None:
            summed[meter_pk] = [meter_pk, public_id, account_id, import_wh, export_wh, late]
        else:
            total[3] += import_wh
            total[4] += export_wh
    return [tuple(total) for total in summed.values()]


def _contracts_first(
    grid: Grid, start: datetime, usages: list[MeterUsage], now: datetime
) -> tuple[list[MeterUsage], list[tuple[int, int]]]:
    """Settle the interval's market contracts before the pool (docs/market.md).

    Each active contract covers at most what both of its meters measured,
    paid at its own price from its escrow to the seller meter's account; the
    deliveries (and any breach) are recorded by the marketplace in this same
    transaction. Returns the usages left for the pool and the ledger legs to
    add to the settlement's one transaction. No fee here: the pool's fee is
    the utility's only one. An empty market costs one indexed query.
    """
    contracts = contracts_settling(grid.pk, start)
    if not contracts:
        return usages, []
    seen = voltages_settled_in([c.buyer_meter for c in contracts], start)
    terms = [
        ContractTerms(c.contract_id, c.seller_meter, c.buyer_meter, c.price_uk_per_kwh, c.cap_wh,
                      c.delivered_before_wh, c.funds_uk, c.tolerance_bp, c.v_min_dv, c.v_max_dv)
        for c in contracts
    ]  # fmt: skip
    settled = settle_contracts(usages, terms, {meter: Voltage(*volts) for meter, volts in seen.items()})
    by_id = {c.contract_id: c for c in contracts}
    legs: list[tuple[int, int]] = []
    for ln in settled.lines:
        if ln.amount_uk:
            contract = by_id[ln.contract_id]
            legs += [(contract.escrow_account_id, -ln.amount_uk), (contract.seller_account_id, ln.amount_uk)]
    deliveries_record(start, [_outcome(ln, seen.get(ln.buyer_meter, (None, None))) for ln in settled.lines], now)
    return settled.remainder, legs


def _outcome(line: ContractLine, volts: tuple[int | None, int | None]) -> DeliveryOutcome:
    return DeliveryOutcome(
        contract_id=line.contract_id,
        cap_wh=line.cap_wh,
        expected_wh=line.expected_wh,
        seller_export_wh=line.seller_export_wh,
        buyer_import_wh=line.buyer_import_wh,
        delivered_wh=line.delivered_wh,
        amount_uk=line.amount_uk,
        breach=line.breach,
        buyer_v_min_dv=volts[0],
        buyer_v_max_dv=volts[1],
    )


def settlement_key(grid: Grid, interval_start: datetime) -> str:
    return f"settlement:{grid.slug}:{format_utc(interval_start)}"


def _post_ledger(
    grid: Grid,
    start: datetime,
    result: IntervalSettlement,
    accounts: dict[str, int],
    contract_legs: Sequence[tuple[int, int]] = (),
):
    legs = list(contract_legs)
    for line in result.lines:
        if line.debit_uk:
            legs.append((accounts[line.meter], -line.debit_uk))
        if line.credit_uk:
            legs.append((accounts[line.meter], line.credit_uk))
    pool_delta_uk = result.carry_out_uk - result.carry_in_uk
    if pool_delta_uk:
        legs.append((grid.pool_account_id, pool_delta_uk))
    if result.fee_uk:
        legs.append((grid.fee_account_id, result.fee_uk))
    if not legs:
        return None
    return transaction_post(
        settlement_key(grid, start), "settlement", legs, memo=f"settlement {grid.slug} {format_utc(start)}"
    ).transaction


def _write_lines(run_id: int, result: IntervalSettlement, meter_pks: dict[str, int]) -> None:
    if connection.vendor == "postgresql":
        buffer = io.StringIO(
            "".join(
                f"{run_id}\t{meter_pks[ln.meter]}\t{ln.import_wh}\t{ln.export_wh}\t{ln.debit_uk}\t{ln.credit_uk}\n"
                for ln in result.lines
            )
        )
        with connection.cursor() as cursor:
            cursor.copy_expert(
                "COPY settlement_settlementline (run_id, meter_id, import_wh, export_wh, debit_uk, credit_uk) "
                "FROM STDIN",
                buffer,
            )
        return
    SettlementLine.objects.bulk_create(
        [
            SettlementLine(
                run_id=run_id,
                meter_id=meter_pks[ln.meter],
                import_wh=ln.import_wh,
                export_wh=ln.export_wh,
                debit_uk=ln.debit_uk,
                credit_uk=ln.credit_uk,
            )
            for ln in result.lines
        ],
        batch_size=2000,
    )


def _record_run(run: SettlementRun, grid: Grid, result: IntervalSettlement, txn, late_count: int, now) -> None:
    run.tariff_uk_per_kwh = grid.tariff_uk_per_kwh
    run.carry_in_uk = result.carry_in_uk
    run.pool_uk = result.pool_uk
    run.fee_uk = result.fee_uk
    run.credited_uk = result.credited_uk
    run.carry_out_uk = result.carry_out_uk
    run.import_wh = result.import_wh
    run.export_wh = result.export_wh
    run.loss_wh = result.loss_wh
    run.loss_bp = result.loss_bp
    run.alerts = list(result.alerts)
    run.meter_count = len(result.lines)
    run.late_reading_count = late_count
    run.transaction = txn
    run.status = RunStatus.SETTLED
    run.settled_at = now
    run.save()


def grid_settle_due(grid_id: int, now: datetime) -> list[Closed]:
    """Settle every due interval of one grid, oldest first."""
    grid = Grid.objects.get(pk=grid_id)
    return [settlement_close(grid.pk, start, now) for start in due_intervals(grid, now)]
