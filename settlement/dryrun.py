"""The dry run of ``manage.py settle``: readings in as CSV, the settlement out
as JSON or a table. Pure: no Django, no database, no clock.

The CSV format, decided here and documented in the command's ``--help``:

- UTF-8 (a byte-order mark is allowed), comma-separated, standard quoting;
- the first non-blank line is the header and names exactly the columns
  ``meter``, ``import_wh``, ``export_wh`` in any order. Any other column is
  refused rather than ignored: an ``import_kwh`` column next to (or instead
  of) ``import_wh`` would otherwise settle silently on the wrong numbers;
- one row per meter: a non-empty, printable meter id, and whole non-negative
  Wh in ASCII digits only (``1.5``, ``1e3``, ``+5``, ``1_000`` and ``-2`` are
  refused). Spaces around names and values are trimmed; blank lines are skipped;
- a meter appears once. A header with no rows is a valid, empty interval.

Every error is a ``ReadingsError`` whose message starts with the line number.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from settlement.domain import IntervalSettlement, MeterUsage
from utility.lib.energy import format_wh
from utility.lib.money import format_uk

CSV_COLUMNS = ("meter", "import_wh", "export_wh")
# The largest value a reading's BigIntegerField can hold: a dry run should not
# accept what the real settlement could never store.
MAX_WH = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+")


class ReadingsError(ValueError):
    """The readings CSV is malformed; the message names the line."""


def readings_parse(data: bytes | str) -> list[MeterUsage]:
    """Parse ``meter,import_wh,export_wh`` CSV (see the module docstring) into
    usages, in file order. Raises ``ReadingsError`` naming the line."""
    text = _decoded(data) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = _rows(reader)
    header = next(rows, None)
    if header is None:
        raise ReadingsError(f"line 1: empty file: expected the header {','.join(CSV_COLUMNS)}")
    header_line, names = header
    positions = _header_positions(header_line, names)
    usages: list[MeterUsage] = []
    first_seen: dict[str, int] = {}
    for line, fields in rows:
        if len(fields) != len(names):
            raise ReadingsError(f"line {line}: expected {len(names)} fields like the header, got {len(fields)}")
        meter = fields[positions["meter"]].strip()
        if not meter:
            raise ReadingsError(f"line {line}: empty meter id")
        if not meter.isprintable():
            raise ReadingsError(f"line {line}: meter id {meter!r} holds control characters")
        if meter in first_seen:
            raise ReadingsError(f"line {line}: meter {meter!r} appears twice (first on line {first_seen[meter]})")
        first_seen[meter] = line
        import_wh = _energy_wh(fields[positions["import_wh"]], "import_wh", line)
        export_wh = _energy_wh(fields[positions["export_wh"]], "export_wh", line)
        usages.append(MeterUsage(meter, import_wh, export_wh))
    return usages


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ReadingsError(f"line {line}: not UTF-8 text") from exc


def _rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Rows that are not blank lines, each with the line it ends on; csv
    errors (a stray quote, a NUL byte) become ``ReadingsError``."""
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ReadingsError(f"line {reader.line_num}: not valid CSV: {exc}") from exc
        # A blank (or all-space) line is skipped; ",," is a row with empty fields.
        if len(fields) > 1 or (fields and fields[0].strip()):
            yield reader.line_num, fields


def _header_positions(line: int, names: list[str]) -> dict[str, int]:
    names = [name.strip() for name in names]
    expected = ",".join(CSV_COLUMNS)
    for name in names:
        if name not in CSV_COLUMNS:
            raise ReadingsError(f"line {line}: unknown column {name!r}: the header must be {expected}")
        if names.count(name) > 1:
            raise ReadingsError(f"line {line}: column {name!r} appears twice in the header")
    missing = [name for name in CSV_COLUMNS if name not in names]
    if missing:
        raise ReadingsError(f"line {line}: missing column {', '.join(missing)}: the header must be {expected}")
    return {name: names.index(name) for name in CSV_COLUMNS}


def _energy_wh(text: str, column: str, line: int) -> int:
    value = text.strip()
    if not value:
        raise ReadingsError(f"line {line}: {column} is empty: expected whole Wh")
    if value.startswith("-") and _DIGITS.fullmatch(value[1:]):
        raise ReadingsError(f"line {line}: {column} is negative ({value}): energy is never negative")
    if not _DIGITS.fullmatch(value):
        raise ReadingsError(f"line {line}: {column} must be a whole number of Wh (digits only), got {value!r}")
    if len(value) > len(str(MAX_WH)) or int(value) > MAX_WH:
        raise ReadingsError(f"line {line}: {column} is too large ({value} Wh)")
    return int(value)


def settlement_as_dict(result: IntervalSettlement) -> dict[str, Any]:
    """The dry run's JSON document: lines sorted by meter id, µk and Wh as
    integers, ``loss_bp`` ``None`` when nothing was exported."""
    return {
        "lines": [
            {
                "meter": line.meter,
                "import_wh": line.import_wh,
                "export_wh": line.export_wh,
                "debit_uk": line.debit_uk,
                "credit_uk": line.credit_uk,
            }
            for line in result.lines
        ],
        "pool_uk": result.pool_uk,
        "fee_uk": result.fee_uk,
        "credited_uk": result.credited_uk,
        "carry_out_uk": result.carry_out_uk,
        "import_wh": result.import_wh,
        "export_wh": result.export_wh,
        "loss_wh": result.loss_wh,
        "loss_bp": result.loss_bp,
        "alerts": list(result.alerts),
    }


def settlement_as_json(result: IntervalSettlement) -> str:
    """``settlement_as_dict`` as indented JSON (integers stay integers)."""
    return json.dumps(settlement_as_dict(result), indent=2, ensure_ascii=False)


def settlement_as_table(result: IntervalSettlement) -> str:
    """A readable table: coins (k) with six decimals, energy in kWh with three."""
    width = max([len("meter"), *(len(line.meter) for line in result.lines)])
    rows = [f"{'meter':<{width}}  {'import kWh':>12}  {'export kWh':>12}  {'debit k':>14}  {'credit k':>14}"]
    rows.extend(
        f"{line.meter:<{width}}  {format_wh(line.import_wh):>12}  {format_wh(line.export_wh):>12}  "
        f"{format_uk(line.debit_uk):>14}  {format_uk(line.credit_uk):>14}"
        for line in result.lines
    )
    loss = "no export" if result.loss_bp is None else f"{result.loss_bp} bp"
    rows += [
        "",
        f"meters       {len(result.lines)}",
        f"carry in     {format_uk(result.carry_in_uk)} k",
        f"pool         {format_uk(result.pool_uk)} k",
        f"fee          {format_uk(result.fee_uk)} k",
        f"credited     {format_uk(result.credited_uk)} k",
        f"carry out    {format_uk(result.carry_out_uk)} k",
        f"import       {format_wh(result.import_wh)} kWh",
        f"export       {format_wh(result.export_wh)} kWh",
        f"loss         {format_wh(result.loss_wh)} kWh ({loss})",
        f"alerts       {', '.join(result.alerts) or 'none'}",
    ]
    return "\n".join(rows)
