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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

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


def _validated(usages: Iterable[MeterUsage]) -> list[MeterUsage]:
    checked = []
    seen: set[str] = set()
    for usage in usages:
        if usage.meter in seen:
            raise ValueError(f"meter {usage.meter!r} appears twice in one interval")
        seen.add(usage.meter)
        if type(usage.import_wh) is not int or type(usage.export_wh) is not int:
            raise ValueError(f"meter {usage.meter!r}: energy must be integer Wh")
        if usage.import_wh < 0 or usage.export_wh < 0:
            raise ValueError(f"meter {usage.meter!r}: energy cannot be negative")
        checked.append(usage)
    checked.sort(key=lambda usage: usage.meter)
    return checked


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

    ``carry_in_uk`` is what the pool held from earlier intervals with no
    export. Lines come back sorted by meter id; the result is the same for any
    order of ``usages``. Raises ``ValueError`` on negative or non-integer input.
    """
    if type(carry_in_uk) is not int or carry_in_uk < 0:
        raise ValueError("carry_in_uk must be a non-negative integer")
    meters = _validated(usages)
    tariff = rules.tariff_uk_per_kwh
    debits = [div_round_half_up(u.import_wh * tariff, 1000) for u in meters]
    pool_uk = carry_in_uk + sum(debits)
    fee_uk = min(pool_uk, rules.fee_fixed_uk + div_round_half_up(pool_uk * rules.fee_bp, 10_000))
    distributable_uk = pool_uk - fee_uk

    import_wh = sum(u.import_wh for u in meters)
    export_wh = sum(u.export_wh for u in meters)
    credits = [0] * len(meters)
    if export_wh > 0:
        exporters = [i for i, u in enumerate(meters) if u.export_wh > 0]
        shares = ratio_split(
            distributable_uk,
            [meters[i].export_wh for i in exporters],
            [meters[i].meter for i in exporters],
        )
        for index, share in zip(exporters, shares, strict=True):
            credits[index] = share
    credited_uk = sum(credits)
    carry_out_uk = pool_uk - fee_uk - credited_uk

    loss_wh = export_wh - import_wh
    loss_bp = div_round_half_up(abs(loss_wh) * 10_000, export_wh) if export_wh > 0 else None
    if loss_bp is not None and loss_wh < 0:
        loss_bp = -loss_bp
    lines = tuple(
        SettlementLine(u.meter, u.import_wh, u.export_wh, debit, credit)
        for u, debit, credit in zip(meters, debits, credits, strict=True)
    )
    assert credited_uk + fee_uk + carry_out_uk == pool_uk, "settlement does not balance"
    assert carry_out_uk == (distributable_uk if export_wh == 0 else 0)
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
