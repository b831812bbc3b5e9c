"""Benchmark: settle one interval for 1,000 to 1,000,000 meters (10 % producers).

    python -m bench.settlement [--sizes 1000,10000,100000,1000000]
                               [--skip-service-above N] [--db NAME] [--results bench/RESULTS.md]

For each size it times (a) the pure ``settle_interval`` alone and (b) the full
``settlement_close`` on PostgreSQL: claim the readings, settle, post the ledger
transaction (row locks, COPY of the entries, balance update), write the lines,
record the run, and commit (where the deferred zero-sum check runs; the
foreign keys of entries and lines are checked per statement, inside the
COPYs). The service runs twice per size: the grid's *first* interval, where
every meter account row is updated for the first time, and the *next* one, the
steady state of every later hour (the figure the targets are about). Between
them the tables are vacuumed and analysed, as autovacuum would in the hour
between two settlements (autovacuum is off on the benchmark machine).

Beside the figures it prints the raw limit they compare against (COPY rows/s,
measured in the same run) and the time per meter, so linear growth can be read
off. After each service run it checks the books: no unbalanced transaction, a
zero global sum, every cached balance equal to its entries, and the interval's
own numbers (debits = pool - carry in, credits + fee + carry out = pool); a
benchmark that produced wrong books would be worthless, so it exits non-zero.

It runs in its own database (default ``commonwatt_bench`` on the server of
``$DATABASE_URL``), dropped and created on every run. Meters, accounts and
readings are loaded by COPY, with progress bars.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import itertools
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    DEFAULT_BENCH_DB,
    CpuClock,
    Progress,
    bench_database_create,
    copy_rows,
    copy_speed_measure,
    fmt_rate,
    fmt_s,
    load_average,
    machine_description,
    step,
    table_markdown,
    table_print,
)

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
PRODUCER_EVERY = 10  # 10 % of the meters export
START = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
TABLES = "ledger_account, ledger_entry, ledger_transaction, meters_meter, meters_reading, settlement_settlementline"


@dataclass
class ServiceRun:
    seconds: float
    steps: dict[str, float]
    cpu_s: float | None  # this process plus its PostgreSQL backend
    load: str  # the machine's load average when it ended


@dataclass
class SizeResult:
    size: int
    pure_s: float
    first: ServiceRun | None = None  # the grid's first interval
    steady: ServiceRun | None = None  # the next one: every later hour looks like this


def fleet_energy(size: int, interval: int) -> list[tuple[int, int]]:
    """``(import_wh, export_wh)`` per meter, seeded so every run is the same:
    every tenth meter a producer (0.5-30 kWh out), the rest consumers (50 Wh-3 kWh in)."""
    rng = random.Random(size * 1_000 + interval)
    return [
        (0, rng.randint(500, 30_000)) if i % PRODUCER_EVERY == 0 else (rng.randint(50, 3_000), 0) for i in range(size)
    ]


def meter_public_id(size: int, index: int) -> str:
    return f"S{size}-{index:07d}"


def pure_time(size: int, energy: list[tuple[int, int]]) -> float:
    """Best of a few runs of ``settle_interval`` (one run above 100,000 meters)."""
    from settlement.domain import GridRules, MeterUsage, settle_interval

    usages = [MeterUsage(meter_public_id(size, i), imp, exp) for i, (imp, exp) in enumerate(energy)]
    rules = GridRules()
    repeats = 5 if size <= 10_000 else 3 if size <= 100_000 else 1
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        settle_interval(usages, rules, 0)
        best = min(best, time.perf_counter() - started)
    return best


def _reserve_ids(cursor, table: str, count: int) -> int:
    """Take ``count`` consecutive ids from the table's sequence (the bench
    database has no other writer); returns the first."""
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (sequence,) = cursor.fetchone()
    cursor.execute("SELECT setval(%s, nextval(%s) + %s - 1)", [sequence, sequence, count])
    (last,) = cursor.fetchone()
    return last - count + 1


def fleet_load(size: int):
    """Create a grid of ``size`` meters (accounts and meters by COPY); returns
    the grid and the first meter's primary key (the others follow it)."""
    from django.db import connection, transaction

    from meters.services import grid_create

    grid = grid_create(f"bench-{size}", f"Benchmark grid, {size:,} meters", now=START)
    stamp = "2026-01-05 10:00:00+00"
    with transaction.atomic(), connection.cursor() as cursor:
        first_account = _reserve_ids(cursor, "ledger_account", size)
        first_meter = _reserve_ids(cursor, "meters_meter", size)
        copy_rows(
            cursor,
            "ledger_account",
            ("id", "code", "kind", "balance_uk", "created_at"),
            (f"{first_account + i}\tmeter:{meter_public_id(size, i)}\tmeter\t0\t{stamp}\n" for i in range(size)),
            size,
            f"load {size:,} accounts (COPY)",
        )
        copy_rows(
            cursor,
            "meters_meter",
            (
                "id", "grid_id", "public_id", "kind", "public", "label", "account_id", "secret_sealed",
                "secret_hash", "active", "never_disconnect", "decision_seq", "supply_state", "created_at",
            ),
            (
                f"{first_meter + i}\t{grid.pk}\t{meter_public_id(size, i)}\t"
                f"{'producer' if i % PRODUCER_EVERY == 0 else 'consumer'}\tf\t\t{first_account + i}\t"
                f"bench\tbench\tt\tf\t0\tconnect\t{stamp}\n"
                for i in range(size)
            ),
            size,
            f"load {size:,} meters (COPY)",
        )  # fmt: skip
    return grid, first_meter


def readings_load(size: int, first_meter: int, interval: int, totals: list[list[int]]) -> None:
    """One reading per meter for interval number ``interval`` (by COPY);
    ``totals`` carries each meter's cumulative registers between intervals."""
    from django.db import connection, transaction

    start = START + interval * HOUR
    period = start.strftime("%Y-%m-%d %H:%M:%S+00")
    received = (start + HOUR + dt.timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S+00")

    def lines():
        for i, (imp, exp) in enumerate(fleet_energy(size, interval)):
            total = totals[i]
            total[0] += imp
            total[1] += exp
            yield f"{first_meter + i}\t{period}\t{imp}\t{exp}\t{total[0]}\t{total[1]}\t{interval + 1}\t{received}\tf\n"

    with transaction.atomic(), connection.cursor() as cursor:
        copy_rows(
            cursor,
            "meters_reading",
            ("meter_id", "interval_start", "import_wh", "export_wh", "import_total_wh", "export_total_wh",
             "seq", "received_at", "late"),
            lines(),
            size,
            f"load {size:,} readings (COPY)",
        )  # fmt: skip


def vacuum_analyze() -> None:
    """What autovacuum does between two hourly settlements (it is off here)."""
    from django.db import connection

    with step("VACUUM ANALYZE"), connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLES}")


# The steps of settlement_close, timed by wrapping the module-level functions
# it calls (the service itself carries no timing code). "commit" is the time
# from the last step to the end of the database transaction: the deferred
# zero-sum check runs there (the foreign keys of entries and lines are
# checked per statement, at the end of their COPY). Indented
# steps run inside "post ledger".
STEPS = (
    ("settlement.services", "_claim_readings", "claim readings"),
    ("settlement.services", "_contracts_first", "market contracts"),
    ("settlement.services", "settle_interval", "settle (pure)"),
    ("utility.ledger.services", "_lock_accounts", "  lock accounts"),
    ("utility.ledger.services", "_write_entries", "  COPY entries"),
    ("utility.ledger.services", "_apply_deltas", "  update balances"),
    ("settlement.services", "_post_ledger", "post ledger"),
    ("settlement.services", "_write_lines", "COPY lines"),
    ("settlement.services", "_record_run", "record run"),
)
CONTAINERS = {"post ledger"}


def _instrument(timings: dict[str, float], progress: Progress) -> Callable[[], None]:
    """Wrap each step to add its seconds to ``timings`` and move ``progress``;
    returns the undo."""
    from django.db import transaction

    undo = []
    for module_name, name, label in STEPS:
        module = importlib.import_module(module_name)
        original = getattr(module, name, None)
        if original is None:
            continue

        def timed(*args, _original=original, _label=label, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                timings[_label] = timings.get(_label, 0.0) + time.perf_counter() - started
                if _label not in CONTAINERS:
                    progress.advance(1, f"{_label.strip()} done")

        setattr(module, name, timed)
        undo.append((module, name, original))

    services = importlib.import_module("settlement.services")
    original_mark = services.grid_mark_settled

    def mark(*args, **kwargs):
        result = original_mark(*args, **kwargs)
        body_end = time.perf_counter()
        progress.advance(0, "commit (deferred checks)")
        transaction.on_commit(lambda: timings.__setitem__("commit", time.perf_counter() - body_end))
        return result

    services.grid_mark_settled = mark
    undo.append((services, "grid_mark_settled", original_mark))

    def restore() -> None:
        for module, name, original in undo:
            setattr(module, name, original)

    return restore


def service_time(grid, size: int, interval: int) -> ServiceRun:
    """Run ``settlement_close`` for interval number ``interval``, step by step timed."""
    from django.db import connection

    from settlement.services import settlement_close

    cpu = CpuClock(connection)

    timings: dict[str, float] = {}
    leaf_steps = 1 + sum(  # + commit
        1 for module, name, label in STEPS if label not in CONTAINERS and hasattr(importlib.import_module(module), name)
    )
    progress = Progress(f"settlement_close {size:,} meters", leaf_steps)
    restore = _instrument(timings, progress)
    start = START + interval * HOUR
    try:
        cpu_started, started = cpu(), time.perf_counter()
        closed = settlement_close(grid.pk, start, now=start + 2 * HOUR)
        elapsed, cpu_ended = time.perf_counter() - started, cpu()
    finally:
        restore()
        progress.finish()
    if not closed.settled_now or closed.run.meter_count != size:
        raise SystemExit(f"settlement of {size:,} meters did not settle them all: {closed}")
    cpu_s = None if cpu_started is None or cpu_ended is None else cpu_ended - cpu_started
    return ServiceRun(elapsed, timings, cpu_s, load_average())


def books_verify(grid, size: int, interval: int) -> None:
    """Exit non-zero unless the books are right (globally and for this run)."""
    from django.db import connection

    from settlement.models import SettlementRun
    from utility.ledger.selectors import ledger_problems

    with step(f"verify the books ({size:,} meters)"):
        # Fresh statistics first, as autovacuum would keep them: planned on
        # empty-table estimates, the balance check's join is quadratic.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE ledger_entry, ledger_account, settlement_settlementline")
        problems = ledger_problems()
        run = SettlementRun.objects.get(grid=grid, interval_start=START + interval * HOUR)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), COALESCE(sum(debit_uk), 0), COALESCE(sum(credit_uk), 0) "
                "FROM settlement_settlementline WHERE run_id = %s",
                [run.pk],
            )
            lines, debits, credits = cursor.fetchone()
            cursor.execute("SELECT count(*), COALESCE(sum(amount_uk), 0) FROM ledger_entry WHERE transaction_id = %s",
                           [run.transaction_id])  # fmt: skip
            entries, entry_sum = cursor.fetchone()
    wrong = [f"{p.what}: {p.detail}" for p in problems]
    if lines != size:
        wrong.append(f"{lines} lines for {size} meters")
    if debits != run.pool_uk - run.carry_in_uk or credits + run.fee_uk + run.carry_out_uk != run.pool_uk:
        wrong.append(f"run does not balance: debits {debits}, credits {credits}, pool {run.pool_uk}, fee {run.fee_uk}")
    if entry_sum != 0 or entries == 0:
        wrong.append(f"settlement transaction: {entries} entries summing to {entry_sum}")
    if wrong:
        raise SystemExit("WRONG BOOKS after the benchmark:\n  " + "\n  ".join(wrong))


def size_run(size: int, with_service: bool) -> SizeResult:
    with step(f"fleet of {size:,} meters (Python)"):
        energy = fleet_energy(size, 0)
    with step(f"pure settle_interval {size:,}"):
        result = SizeResult(size, pure_time(size, energy))
    if not with_service:
        return result
    grid, first_meter = fleet_load(size)
    totals = [[0, 0] for _ in range(size)]
    for interval in (0, 1):
        readings_load(size, first_meter, interval, totals)
        vacuum_analyze()
        run = service_time(grid, size, interval)
        books_verify(grid, size, interval)
        if interval == 0:
            result.first = run
        else:
            result.steady = run
    return result


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not sizes or any(size < 10 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be at least 10 meters")
    return sorted(set(sizes))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.settlement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES), help="meter counts (default: %(default)s)")
    parser.add_argument(
        "--skip-service-above", type=int, default=None, metavar="N", help="time only the pure function above N meters"
    )
    parser.add_argument("--db", default=DEFAULT_BENCH_DB, help="database to drop, create, use (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=None, help="also write the table as markdown to this file")
    parser.add_argument("--no-steps", action="store_true", help="do not print the per-step breakdown")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    bench_database_create(args.db)
    from django.db import connection

    with connection.cursor() as cursor:
        copy = copy_speed_measure(cursor, min(max(args.sizes), 1_000_000))
        cursor.execute("SHOW server_version")
        (pg_version,) = cursor.fetchone()
    results = [
        size_run(size, args.skip_service_above is None or size <= args.skip_service_above) for size in args.sizes
    ]
    machine = f"{machine_description()}, PostgreSQL {pg_version.split()[0]}"
    _report(results, copy, machine, args)
    return 0


def _report(results: list[SizeResult], copy, machine: str, args) -> None:
    today = dt.date.today().isoformat()
    headers = ("meters", "pure s", "pure meters/s", "service s", "service meters/s", "service µs/meter",
               "service CPU s", "first interval s", "raw COPY rows/s", "load", "date", "machine")  # fmt: skip
    rows = []
    for r in results:
        steady = r.steady.seconds if r.steady else None
        rows.append(
            (
                f"{r.size:,}",
                fmt_s(r.pure_s),
                fmt_rate(r.size / r.pure_s),
                fmt_s(steady) if steady else "skipped",
                fmt_rate(r.size / steady) if steady else "-",
                f"{1e6 * steady / r.size:.1f}" if steady else "-",
                fmt_s(r.steady.cpu_s) if r.steady and r.steady.cpu_s is not None else "-",
                fmt_s(r.first.seconds) if r.first else "-",
                fmt_rate(copy.temp_rows_per_s),
                r.steady.load if r.steady else load_average(),
                today,
                machine,
            )
        )
    print()
    print("Settlement of one interval, 10 % producers (service: steady state; first interval: a new grid's first)")
    table_print(headers[:-2], [row[:-2] for row in rows])
    print(f"raw limit: COPY {fmt_rate(copy.temp_rows_per_s)} rows/s into a temp table, "
          f"{fmt_rate(copy.logged_rows_per_s)} rows/s into an indexed logged table")  # fmt: skip
    print(f"pure µs/meter: {', '.join(f'{r.size:,}: {1e6 * r.pure_s / r.size:.2f}' for r in results)}")
    _report_growth(results)
    print(f"machine: {machine}")
    if not args.no_steps:
        _report_steps([(f"{r.size:,} first", r.first) for r in results if r.first])
        _report_steps([(f"{r.size:,}", r.steady) for r in results if r.steady])
    if args.results is not None:
        args.results.write_text(
            "# Settlement benchmark\n\n"
            "`python -m bench.settlement` settles one interval with 10 % producers. *pure*: "
            "`settle_interval` alone. *service*: the full `settlement_close` on PostgreSQL (claim the "
            "readings, settle, one ledger transaction with row locks, COPY of entries and lines, balances, "
            "foreign keys checked per statement, commit with the deferred zero-sum check), in the steady "
            "state of every hour "
            "after a grid's first; *first interval*: that first one, when every account row is updated for "
            "the first time. *service CPU*: CPU seconds of the benchmark process and its PostgreSQL backend "
            "during the service (steadier than wall time on a shared machine; *load*: the 1-minute load "
            "average then). *raw COPY*: PostgreSQL COPY into a temporary table, measured in the same run.\n\n"
            + table_markdown(headers, rows)
        )
        print(f"written to {args.results}")


def _report_growth(results: list[SizeResult]) -> None:
    """Linear growth: from one size to the next, time should grow as meters do."""
    pairs = [(a, b) for a, b in itertools.pairwise(results) if a.steady and b.steady and a.size < b.size]
    for a, b in pairs:
        meters, wall = b.size / a.size, b.steady.seconds / a.steady.seconds
        cpu = f", {b.steady.cpu_s / a.steady.cpu_s:.1f}x CPU" if a.steady.cpu_s and b.steady.cpu_s else ""
        print(f"growth {a.size:,} -> {b.size:,} meters: {meters:.0f}x meters, {wall:.1f}x time{cpu} "
              f"({wall / meters:.2f} of linear)")  # fmt: skip


def _report_steps(runs: list[tuple[str, ServiceRun]]) -> None:
    if not runs:
        return
    labels = [label for _, _, label in STEPS if any(label in run.steps for _, run in runs)] + ["commit"]
    rows = [(label, *(fmt_s(run.steps.get(label, 0.0)) for _, run in runs)) for label in labels]
    top = {name: sum(v for k, v in run.steps.items() if not k.startswith("  ")) for name, run in runs}
    rows.append(("other", *(fmt_s(run.seconds - top[name]) for name, run in runs)))
    rows.append(("total", *(fmt_s(run.seconds) for _, run in runs)))
    rows.append(("CPU, client + server", *(fmt_s(run.cpu_s) if run.cpu_s is not None else "-" for _, run in runs)))
    rows.append(("load average", *(run.load for _, run in runs)))
    print("\nsettlement_close, seconds per step")
    table_print(("step", *(name for name, _ in runs)), rows)


if __name__ == "__main__":
    sys.exit(main())
