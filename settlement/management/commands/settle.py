"""``manage.py settle``: settle a grid's due intervals, or dry-run a CSV.

    settle GRID [--interval 2026-01-01T10:00:00Z]
    settle --dry-run --readings FILE.csv [--json] [--tariff-uk-per-kwh N] [--fee-fixed-uk N]
           [--fee-bp N] [--carry-in-uk N] [--loss-alert-bp N]

The real mode settles the intervals ``due_intervals`` lists (what
``grid_settle_due`` does) or the one named, each with ``settlement_close`` at
``timezone.now()``, and prints one line per interval as it commits. Exit
status 1 for anything refused (unknown grid, an unaligned, undue or
out-of-order interval), 2 for a malformed option. The dry run parses and
renders in ``settlement.dryrun`` and settles with the pure engine: it never
opens a database connection.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError
from django.utils import timezone

from meters.models import Grid
from meters.selectors import grid_get
from settlement.domain import GridRules, MeterUsage, settle_interval
from settlement.dryrun import CSV_COLUMNS, ReadingsError, readings_parse, settlement_as_json, settlement_as_table
from settlement.models import SettlementRun
from settlement.services import Closed, SettlementRefused, due_intervals, settlement_close
from utility.lib.energy import format_wh
from utility.lib.money import format_uk
from utility.lib.timeutil import format_utc, parse_utc

# The dry run's rule flags: option dest -> (flag, default). The defaults are a
# new grid's (GridRules), and a dry run starts with an empty pool.
_NEW_GRID = GridRules()
RULE_FLAGS = {
    "tariff_uk_per_kwh": ("--tariff-uk-per-kwh", _NEW_GRID.tariff_uk_per_kwh),
    "fee_fixed_uk": ("--fee-fixed-uk", _NEW_GRID.fee_fixed_uk),
    "fee_bp": ("--fee-bp", _NEW_GRID.fee_bp),
    "loss_alert_bp": ("--loss-alert-bp", _NEW_GRID.loss_alert_bp),
    "carry_in_uk": ("--carry-in-uk", 0),
}
DRY_RUN_ONLY = ("readings", "json", *RULE_FLAGS)
BP_MAX = 10_000


def non_negative_int(text: str) -> int:
    """argparse type: whole numbers in ASCII digits only (no ``1.5``, ``1e6``, ``-5``)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"must be a non-negative whole number, got {text!r}")
    return int(text)


class Command(BaseCommand):
    help = (
        "Settle every due interval of GRID (or only --interval), or, with --dry-run, settle the readings "
        "of a CSV file with the pure engine and print the result without touching the database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = (
            f"dry-run CSV: a header line naming exactly {','.join(CSV_COLUMNS)} (any order; any other column "
            "is refused), then one row per meter with whole non-negative Wh; blank lines are skipped. "
            "Errors name the line and exit non-zero."
        )
        parser.add_argument("grid", nargs="?", metavar="GRID", help="slug of the grid to settle")
        parser.add_argument("--interval", metavar="ISO8601", help="settle only the interval starting here (UTC)")
        dry = parser.add_argument_group("dry run (no database)")
        dry.add_argument("--dry-run", action="store_true", help="settle a CSV of readings; write nothing")
        dry.add_argument("--readings", metavar="FILE.csv", help="the readings: meter,import_wh,export_wh ('-': stdin)")
        dry.add_argument("--json", action="store_true", default=None, help="print JSON instead of a table")
        for dest, (flag, default) in RULE_FLAGS.items():
            dry.add_argument(flag, dest=dest, type=non_negative_int, metavar="N", help=f"default {default}")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"]:
            self._dry_run(options)
            return
        try:
            self._settle(options)
        except OperationalError as exc:
            raise CommandError(f"database error (intervals printed above are settled, no others): {exc}") from exc

    def _settle(self, options: dict[str, Any]) -> None:
        given = [RULE_FLAGS.get(dest, (f"--{dest}",))[0] for dest in DRY_RUN_ONLY if options.get(dest) is not None]
        if given:
            raise CommandError(f"{', '.join(given)} only apply with --dry-run")
        if not options["grid"]:
            raise CommandError("name the GRID to settle (or use --dry-run --readings FILE.csv)")
        try:
            grid = grid_get(options["grid"])
        except Grid.DoesNotExist:
            raise CommandError(f"no grid named {options['grid']!r}") from None
        now = timezone.now()
        if options["interval"] is not None:
            starts = [_interval_start(options["interval"])]
        else:
            starts = list(due_intervals(grid, now))
            if not starts:
                self.stdout.write(f"grid {grid.slug}: nothing due (settled through {_through(grid)})")
        # One interval at a time (as grid_settle_due does), printing each as it
        # commits, so a long backlog shows progress and a failure shows how far it got.
        for start in starts:
            try:
                closed = settlement_close(grid.pk, start, now)
            except SettlementRefused as exc:
                raise CommandError(f"grid {grid.slug}: {exc}") from exc
            self.stdout.write(_run_summary(closed))

    def _dry_run(self, options: dict[str, Any]) -> None:
        if options["grid"] or options["interval"] is not None:
            raise CommandError("--dry-run settles a CSV file: it takes neither GRID nor --interval")
        if not options["readings"]:
            raise CommandError("--dry-run needs --readings FILE.csv")
        values = _rule_values(options)
        carry_in_uk = values.pop("carry_in_uk")
        usages = self._read_usages(options["readings"])
        result = settle_interval(usages, GridRules(**values), carry_in_uk)
        self.stdout.write(settlement_as_json(result) if options["json"] else settlement_as_table(result))

    def _read_usages(self, path: str) -> list[MeterUsage]:
        try:
            if path == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(path, "rb") as handle:
                    data = handle.read()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            return readings_parse(data)
        except ReadingsError as exc:
            raise CommandError(f"{path}: {exc}") from exc


def _rule_values(options: dict[str, Any]) -> dict[str, int]:
    """The dry run's rules, checked here as well as by argparse because
    ``call_command(..., fee_bp=...)`` passes keyword values unparsed."""
    values = {}
    for dest, (flag, default) in RULE_FLAGS.items():
        value = default if options.get(dest) is None else options[dest]
        if type(value) is not int or value < 0:
            raise CommandError(f"{flag} must be a non-negative whole number, got {value!r}")
        values[dest] = value
    if values["fee_bp"] > BP_MAX:
        raise CommandError(f"--fee-bp cannot exceed {BP_MAX} (100 %), got {values['fee_bp']}")
    return values


def _interval_start(text: str) -> datetime:
    try:
        return parse_utc(text)
    except ValueError as exc:
        raise CommandError(f"--interval: {exc} (e.g. 2026-01-01T10:00:00Z)") from exc


def _through(grid: Grid) -> str:
    if grid.settled_through is None:
        return f"nothing yet; the first interval starts {format_utc(grid.started_at)}"
    return format_utc(grid.settled_through)


def _run_summary(closed: Closed) -> str:
    """One line per interval: what was settled, or that it already was."""
    run: SettlementRun = closed.run
    state = "settled" if closed.settled_now else "already settled"
    loss = "no export" if run.loss_bp is None else f"{run.loss_bp} bp"
    return (
        f"{format_utc(run.interval_start)}  {state}  meters {run.meter_count}  "
        f"pool {format_uk(run.pool_uk)} k  fee {format_uk(run.fee_uk)} k  credited {format_uk(run.credited_uk)} k  "
        f"carry {format_uk(run.carry_out_uk)} k  loss {format_wh(run.loss_wh)} kWh ({loss})  "
        f"alerts: {', '.join(run.alerts) or 'none'}"
    )
