"""Settle one interval's market contracts before the pool (SPEC.md, "The marketplace").

Pure: no Django, no clock, no settings. Units: energy in integer Wh, money in
integer µk, prices in µk per kWh, tolerances in basis points, voltages in
decivolts (2300 dV = 230 V).

For each contract, in contract id order, out of what the meters measured:

1. ``expected_wh = min(cap_wh, buyer import left)``: what the contract was meant
   to cover this interval (the buyer cannot receive more than it imported);
2. breach checks, before any payment (a breached interval is not paid):
   * ``shortfall`` (dual metering): the seller's export left falls short of
     ``expected_wh`` by more than ``tolerance_bp`` of it;
   * ``voltage_band``: the buyer meter's ``v_min``/``v_max`` left the band;
3. ``delivered_wh = min(expected_wh, seller export left, what funds_uk buys)``;
4. ``amount_uk = cost(delivered_before + delivered) - cost(delivered_before)``
   with ``cost(wh) = round_half_up(wh * price / 1000)``: rounding the running
   total, not each interval, so a contract's payments sum to the cost of all it
   delivered, to the µk, however the energy is spread over intervals.

The delivered Wh leave the seller's export and the buyer's import; the
``remainder`` goes through the pool (``settle_interval``), so no Wh is counted
twice. No fee is taken here: the utility's fee is applied once, by the pool
settlement. The escrow that pays (``funds_uk``) is debited and the seller
credited the same ``amount_uk``: contract money is conserved by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .engine import MeterUsage

BREACH_SHORTFALL = "shortfall"
BREACH_VOLTAGE = "voltage_band"


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """One contract as the interval sees it.

    ``cap_wh``: the most it may cover this interval (its per-interval quantity,
    at most the energy it still owes). ``delivered_before_wh``: what it
    delivered in earlier intervals. ``funds_uk``: what its escrow holds now;
    payments never exceed it. ``tolerance_bp`` None: no dual-metering check;
    ``v_min_dv``/``v_max_dv`` None: no voltage band.
    """

    contract_id: int
    seller_meter: str
    buyer_meter: str
    price_uk_per_kwh: int
    cap_wh: int
    delivered_before_wh: int = 0
    funds_uk: int = 0
    tolerance_bp: int | None = None
    v_min_dv: int | None = None
    v_max_dv: int | None = None

    def __post_init__(self) -> None:
        for name in ("contract_id", "price_uk_per_kwh", "cap_wh", "delivered_before_wh", "funds_uk"):
            _check_count(name, getattr(self, name))
        for name in ("tolerance_bp", "v_min_dv", "v_max_dv"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name))
        if not isinstance(self.seller_meter, str) or not isinstance(self.buyer_meter, str):
            raise ValueError("meter ids must be strings")
        if not self.seller_meter or self.seller_meter == self.buyer_meter:
            raise ValueError(f"contract {self.contract_id}: seller and buyer must be two meters")
        if self.v_min_dv is not None and self.v_max_dv is not None and self.v_min_dv > self.v_max_dv:
            raise ValueError(f"contract {self.contract_id}: v_min_dv above v_max_dv")


class Voltage(NamedTuple):
    """The lowest and highest voltage a meter saw in the interval (dV; None: not reported)."""

    v_min_dv: int | None
    v_max_dv: int | None


class ContractLine(NamedTuple):
    """One contract's interval. ``seller_export_wh``/``buyer_import_wh`` are what
    the meters measured and was still free for this contract (dual metering)."""

    contract_id: int
    seller_meter: str
    buyer_meter: str
    cap_wh: int
    expected_wh: int
    seller_export_wh: int
    buyer_import_wh: int
    delivered_wh: int
    amount_uk: int
    breach: str  # "" or BREACH_*


@dataclass(frozen=True, slots=True)
class ContractsSettlement:
    """The contracts' lines and what is left for the pool.

    Invariants, asserted: per meter, ``remainder import + Σ delivered to it ==
    measured import`` and likewise for export; ``amount_uk <= funds_uk``.
    """

    lines: tuple[ContractLine, ...]
    remainder: list[MeterUsage]
    delivered_wh: int
    amount_uk: int


def _check_count(name: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def cost_uk(energy_wh: int, price_uk_per_kwh: int) -> int:
    """``round_half_up(energy_wh * price / 1000)`` µk, for non-negative integers."""
    return (2 * energy_wh * price_uk_per_kwh + 1000) // 2000


def affordable_wh(funds_uk: int, delivered_before_wh: int, price_uk_per_kwh: int) -> int | None:
    """The most Wh that ``funds_uk`` pays for after ``delivered_before_wh``
    (cumulative rounding); None when the energy is free (price 0).

    ``cost(x) <= C`` ⟺ ``2xp + 1000 <= 2000C + 1999`` ⟺ ``x <= (2000C + 999) // 2p``.
    """
    if price_uk_per_kwh == 0:
        return None
    ceiling_uk = cost_uk(delivered_before_wh, price_uk_per_kwh) + funds_uk
    return (2000 * ceiling_uk + 999) // (2 * price_uk_per_kwh) - delivered_before_wh


def shortfall_breached(expected_wh: int, seller_export_wh: int, tolerance_bp: int) -> bool:
    """Dual metering: the seller's metered delivery falls short of what the
    buyer's meter received (capped by the contract) by more than the tolerance."""
    shortfall_wh = expected_wh - seller_export_wh
    return shortfall_wh > 0 and shortfall_wh * 10_000 > tolerance_bp * expected_wh


def voltage_breached(terms: ContractTerms, seen: Voltage | None) -> bool:
    """The buyer meter's voltage left the contract's band (only what it reported counts)."""
    if seen is None:
        return False
    low = terms.v_min_dv is not None and seen.v_min_dv is not None and seen.v_min_dv < terms.v_min_dv
    high = terms.v_max_dv is not None and seen.v_max_dv is not None and seen.v_max_dv > terms.v_max_dv
    return low or high


def settle_contracts(
    usages: Sequence[MeterUsage],
    contracts: Iterable[ContractTerms],
    voltages: Mapping[str, Voltage] | None = None,
) -> ContractsSettlement:
    """Settle ``contracts`` against what the meters measured (``usages``) and
    return their lines (in contract id order) and the pool's ``remainder``
    (``usages`` with the delivered Wh taken out, same order, every meter kept).

    ``voltages`` maps a buyer meter id to what it saw. With no contracts the
    usages come back as they are (no copy: settlement of 100,000 meters pays
    nothing for an empty market). Raises ``ValueError`` on a contract id that
    appears twice or bad terms (see ``ContractTerms``).
    """
    ordered = sorted(contracts, key=lambda terms: terms.contract_id)
    if not ordered:
        return ContractsSettlement((), list(usages), 0, 0)
    if len({terms.contract_id for terms in ordered}) != len(ordered):
        raise ValueError("a contract appears twice in one interval")
    wanted = {terms.seller_meter for terms in ordered} | {terms.buyer_meter for terms in ordered}
    where = {usage.meter: index for index, usage in enumerate(usages) if usage.meter in wanted}
    imports = {meter: usages[index].import_wh for meter, index in where.items()}
    exports = {meter: usages[index].export_wh for meter, index in where.items()}
    lines = []
    for terms in ordered:
        line = _settle_one(terms, exports.get(terms.seller_meter, 0), imports.get(terms.buyer_meter, 0), voltages)
        if line.delivered_wh:
            exports[terms.seller_meter] -= line.delivered_wh
            imports[terms.buyer_meter] -= line.delivered_wh
        lines.append(line)
    remainder = list(usages)
    for meter, index in where.items():
        remainder[index] = MeterUsage(meter, imports[meter], exports[meter])
    delivered_wh = sum(line.delivered_wh for line in lines)
    result = ContractsSettlement(tuple(lines), remainder, delivered_wh, sum(line.amount_uk for line in lines))
    _check(result, usages, ordered, where.values())
    return result


def _settle_one(
    terms: ContractTerms, seller_export_wh: int, buyer_import_wh: int, voltages: Mapping[str, Voltage] | None
) -> ContractLine:
    """One contract's line, given the export and import still free for it."""
    expected_wh = min(terms.cap_wh, buyer_import_wh)
    breach = ""
    if terms.tolerance_bp is not None and shortfall_breached(expected_wh, seller_export_wh, terms.tolerance_bp):
        breach = BREACH_SHORTFALL
    elif voltage_breached(terms, (voltages or {}).get(terms.buyer_meter)):
        breach = BREACH_VOLTAGE
    delivered_wh = amount_uk = 0
    if not breach:
        delivered_wh = min(expected_wh, seller_export_wh)
        limit_wh = affordable_wh(terms.funds_uk, terms.delivered_before_wh, terms.price_uk_per_kwh)
        if limit_wh is not None:
            delivered_wh = min(delivered_wh, limit_wh)
        before_uk = cost_uk(terms.delivered_before_wh, terms.price_uk_per_kwh)
        amount_uk = cost_uk(terms.delivered_before_wh + delivered_wh, terms.price_uk_per_kwh) - before_uk
    return ContractLine(
        terms.contract_id,
        terms.seller_meter,
        terms.buyer_meter,
        terms.cap_wh,
        expected_wh,
        seller_export_wh,
        buyer_import_wh,
        delivered_wh,
        amount_uk,
        breach,
    )


def _check(
    result: ContractsSettlement, usages: Sequence[MeterUsage], contracts: list[ContractTerms], touched: Iterable[int]
) -> None:
    """Assert the invariants: no Wh counted twice, none invented, no escrow
    overdrawn. Only the contracts' meters (``touched`` positions) can have
    changed: the other entries of the remainder are the very same tuples."""
    delivered_in: dict[str, int] = {}
    delivered_out: dict[str, int] = {}
    for line, terms in zip(result.lines, contracts, strict=True):
        assert 0 <= line.amount_uk <= terms.funds_uk, "a contract paid more than its escrow holds"
        assert line.delivered_wh <= min(line.cap_wh, line.seller_export_wh, line.buyer_import_wh)
        delivered_in[line.buyer_meter] = delivered_in.get(line.buyer_meter, 0) + line.delivered_wh
        delivered_out[line.seller_meter] = delivered_out.get(line.seller_meter, 0) + line.delivered_wh
    assert len(result.remainder) == len(usages)
    for index in touched:
        before, after = usages[index], result.remainder[index]
        assert after.meter == before.meter and after.import_wh >= 0 and after.export_wh >= 0
        assert after.import_wh + delivered_in.get(before.meter, 0) == before.import_wh, "import counted twice"
        assert after.export_wh + delivered_out.get(before.meter, 0) == before.export_wh, "export counted twice"
