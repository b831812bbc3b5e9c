"""Settle one interval of one grid, exactly (SPEC.md, "The settlement").

Units: energy in integer Wh, money in integer µk, tariffs in µk per kWh,
percentages in basis points. The rules, in order:

1. each meter's import is debited ``round_half_up(import_wh * tariff / 1000)``
   and credited to the pool;
2. ``pool = carry_in + Σ debits``; the utility's
   ``fee = min(pool, fee_fixed + round_half_up(pool * fee_bp / 10000))``;
3. ``distributable = pool - fee`` is split over exporters in proportion to
   ``export_wh`` by largest remainder (ties: lower meter id); with no export at
   all it carries to the next interval;
4. ``loss_wh = Σexport - Σimport``; alerts for high loss, import above export,
   and import with no export.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import compress, islice
from operator import eq, itemgetter
from typing import NamedTuple, NoReturn

from utility.lib.money import div_round_half_up, ratio_split

ALERT_LOSS_HIGH = "loss_high"
ALERT_IMPORT_EXCEEDS_EXPORT = "import_exceeds_export"
ALERT_NO_EXPORT = "no_export"


@dataclass(frozen=True, slots=True)
class GridRules:
    """A grid's tariff and fee for one interval (all non-negative integers)."""

    tariff_uk_per_kwh: int = 1_000_000
    fee_fixed_uk: int = 10_000
    fee_bp: int = 0
    loss_alert_bp: int = 1_500

    def __post_init__(self) -> None:
        for name in ("tariff_uk_per_kwh", "fee_fixed_uk", "fee_bp", "loss_alert_bp"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.fee_bp > 10_000:
            raise ValueError("fee_bp cannot exceed 10000 (100 %)")


class MeterUsage(NamedTuple):
    """What one meter measured in the interval (Wh, both non-negative)."""

    meter: str
    import_wh: int
    export_wh: int


class SettlementLine(NamedTuple):
    """One meter's result: it pays ``debit_uk`` and earns ``credit_uk``.

    A prosumer has both; a NamedTuple keeps a million lines cheap to build.
    """

    meter: str
    import_wh: int
    export_wh: int
    debit_uk: int
    credit_uk: int


@dataclass(frozen=True, slots=True)
class IntervalSettlement:
    """The whole interval. Invariant: ``credited + fee + carry_out == pool``."""

    lines: tuple[SettlementLine, ...]
    carry_in_uk: int
    pool_uk: int
    fee_uk: int
    credited_uk: int
    carry_out_uk: int
    import_wh: int
    export_wh: int
    loss_wh: int
    loss_bp: int | None
    alerts: tuple[str, ...]


_METER = itemgetter(0)
_IMPORT = itemgetter(1)
_EXPORT = itemgetter(2)
# ``SettlementLine._make`` in C: builds a line from a 5-tuple of fields without
# the Python-level ``__new__`` a NamedTuple call runs per line (half the cost
# of building 100,000 lines).
_line_from_fields = partial(tuple.__new__, SettlementLine)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while the lines are built.

    CPython never untracks NamedTuple instances (only exact tuples), so
    100,000 new lines set off several full collections that walk the whole
    heap: half the settlement's time. The lines hold only strings and ints,
    so they form no cycle and pausing changes nothing but time; reference
    counting still frees everything promptly. The collector is switched
    back on only if it was on: a caller that disabled it keeps it disabled,
    and with two settlements in two threads the first to pause re-enables it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _columns(usages: Iterable[MeterUsage]) -> tuple[list[str], list[int], list[int]]:
    """Validate the usages and return their columns, sorted by meter id.

    The checks run column-wise in C (``map``, ``set``, ``min``): a Python
    loop over each usage would cost more than the settlement itself. Only
    when a check fails does ``_refuse`` walk the rows to name the culprit.
    """
    rows = list(usages)
    if not set(map(type, rows)) <= {MeterUsage}:
        raise ValueError("usages must be MeterUsage(meter, import_wh, export_wh) tuples")
    try:
        rows.sort(key=_METER)
    except TypeError:  # meter ids that do not compare: not all strings
        _refuse(rows)
    meter_ids = list(map(_METER, rows))
    imports = list(map(_IMPORT, rows))
    exports = list(map(_EXPORT, rows))
    # Exact types: a bool is an int subclass and a float may hide a fraction
    # of a Wh; neither is energy here.
    if rows and (
        not set(map(type, meter_ids)) <= {str}
        or not meter_ids[0]  # sorted, so an empty id would come first
        or any(map(eq, meter_ids, islice(meter_ids, 1, None)))  # sorted, so a duplicate is a neighbour
        or not set(map(type, imports)) <= {int}
        or not set(map(type, exports)) <= {int}
        or min(imports) < 0
        or min(exports) < 0
    ):
        _refuse(rows)
    return meter_ids, imports, exports


def _refuse(rows: list[MeterUsage]) -> NoReturn:
    """Raise ``ValueError`` naming the first bad usage (the slow, clear path)."""
    seen: set[str] = set()
    for meter, import_wh, export_wh in rows:
        if type(meter) is not str or not meter:
            raise ValueError(f"meter id must be a non-empty string, got {meter!r}")
        if meter in seen:
            raise ValueError(f"meter {meter!r} appears twice in one interval")
        seen.add(meter)
        if type(import_wh) is not int or type(export_wh) is not int:
            raise ValueError(f"meter {meter!r}: energy must be integer Wh")
        if import_wh < 0 or export_wh < 0:
            raise ValueError(f"meter {meter!r}: energy cannot be negative")
    raise AssertionError("_refuse called on valid usages")


def _alerts(import_wh: int, export_wh: int, loss_bp: int | None, rules: GridRules) -> tuple[str, ...]:
    alerts = []
    if loss_bp is not None and loss_bp > rules.loss_alert_bp:
        alerts.append(ALERT_LOSS_HIGH)
    if import_wh > export_wh > 0:
        alerts.append(ALERT_IMPORT_EXCEEDS_EXPORT)
    if import_wh > 0 and export_wh == 0:
        alerts.append(ALERT_NO_EXPORT)
    return tuple(alerts)


def settle_interval(usages: Iterable[MeterUsage], rules: GridRules, carry_in_uk: int = 0) -> IntervalSettlement:
    """Settle one interval: debits, the utility fee, credits, loss and alerts.

    ``carry_in_uk`` (µk) is what the pool held from earlier intervals with no
    export. Lines come back sorted by meter id; the result is the same for any
    order of ``usages``. Raises ``ValueError`` on a duplicate or empty meter
    id and on negative or non-integer energy (bool and float included).
    Invariant, asserted: ``credited_uk + fee_uk + carry_out_uk == pool_uk``.
    """
    if type(carry_in_uk) is not int or carry_in_uk < 0:
        raise ValueError("carry_in_uk must be a non-negative integer")
    meter_ids, imports, exports = _columns(usages)
    # round_half_up(import_wh * tariff / 1000) = floor((2 * import_wh * tariff + 1000) / 2000),
    # written inline: a function call per meter would double the cost of this line.
    twice_tariff = 2 * rules.tariff_uk_per_kwh
    debits = [(import_wh * twice_tariff + 1000) // 2000 for import_wh in imports]
    pool_uk = carry_in_uk + sum(debits)
    fee_uk = min(pool_uk, rules.fee_fixed_uk + div_round_half_up(pool_uk * rules.fee_bp, 10_000))
    distributable_uk = pool_uk - fee_uk

    import_wh = sum(imports)
    export_wh = sum(exports)
    credits = [0] * len(meter_ids)
    if export_wh > 0:
        # Energy is validated non-negative, so "truthy" means "exported something".
        exporters = list(compress(range(len(meter_ids)), exports))
        shares = ratio_split(distributable_uk, list(compress(exports, exports)), list(compress(meter_ids, exports)))
        for index, share in zip(exporters, shares, strict=True):
            credits[index] = share
    credited_uk = sum(credits)
    carry_out_uk = pool_uk - fee_uk - credited_uk

    loss_wh = export_wh - import_wh
    loss_bp = _loss_bp(loss_wh, export_wh)
    with _gc_paused():
        lines = tuple(map(_line_from_fields, zip(meter_ids, imports, exports, debits, credits, strict=True)))
    assert credited_uk + fee_uk + carry_out_uk == pool_uk, "settlement does not balance"
    assert carry_out_uk == (distributable_uk if export_wh == 0 else 0), "carry only when nothing was exported"
    return IntervalSettlement(
        lines=lines,
        carry_in_uk=carry_in_uk,
        pool_uk=pool_uk,
        fee_uk=fee_uk,
        credited_uk=credited_uk,
        carry_out_uk=carry_out_uk,
        import_wh=import_wh,
        export_wh=export_wh,
        loss_wh=loss_wh,
        loss_bp=loss_bp,
        alerts=_alerts(import_wh, export_wh, loss_bp, rules),
    )


def _loss_bp(loss_wh: int, export_wh: int) -> int | None:
    """Loss as basis points of the export, rounded half away from zero
    (``Decimal``'s ROUND_HALF_UP); ``None`` when nothing was exported.

    A negative loss (import above export) keeps its sign: -0.5 bp is -1.
    """
    if export_wh == 0:
        return None
    magnitude_bp = div_round_half_up(abs(loss_wh) * 10_000, export_wh)
    return -magnitude_bp if loss_wh < 0 else magnitude_bp
