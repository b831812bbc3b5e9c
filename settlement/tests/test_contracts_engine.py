"""Market contracts settle before the pool: worked examples, no database.

Angel and Bennie export, Carlos and Danny import (SPEC.md's example); Angel
has sold Carlos 2 kWh at 0.8 k per kWh.
"""

from __future__ import annotations

import pytest

from settlement.domain import GridRules, MeterUsage, settle_interval
from settlement.domain.contracts import (
    BREACH_SHORTFALL,
    BREACH_VOLTAGE,
    ContractLine,
    ContractTerms,
    Voltage,
    affordable_wh,
    cost_uk,
    settle_contracts,
)

SEED = [
    MeterUsage("angel", 0, 3_000),
    MeterUsage("bennie", 0, 2_500),
    MeterUsage("carlos", 3_000, 0),
    MeterUsage("danny", 2_000, 0),
]
FUNDS = 10_000_000


def terms(**changes) -> ContractTerms:
    fields = dict(
        contract_id=1, seller_meter="angel", buyer_meter="carlos", price_uk_per_kwh=800_000, cap_wh=2_000,
        funds_uk=FUNDS,
    )  # fmt: skip
    fields.update(changes)
    return ContractTerms(**fields)


def test_the_seed_example_with_a_contract_settles_to_the_micro_coin():
    market = settle_contracts(SEED, [terms()])

    assert market.lines == (ContractLine(1, "angel", "carlos", 2_000, 2_000, 3_000, 3_000, 2_000, 1_600_000, ""),)
    assert market.remainder == [
        MeterUsage("angel", 0, 1_000),
        MeterUsage("bennie", 0, 2_500),
        MeterUsage("carlos", 1_000, 0),
        MeterUsage("danny", 2_000, 0),
    ]
    pool = settle_interval(market.remainder, GridRules())
    # Pool: Carlos 1 kWh + Danny 2 kWh = 3 k; fee 0.01 k; 2.99 k over 1 : 2.5 kWh.
    # Angel 854,285.71 → 854,286 (the larger remainder), Bennie 2,135,714.29 → 2,135,714.
    assert [(line.meter, line.debit_uk, line.credit_uk) for line in pool.lines] == [
        ("angel", 0, 854_286),
        ("bennie", 0, 2_135_714),
        ("carlos", 1_000_000, 0),
        ("danny", 2_000_000, 0),
    ]
    assert (pool.pool_uk, pool.fee_uk, pool.credited_uk) == (3_000_000, 10_000, 2_990_000)
    # Angel earns the contract and the pool share; Carlos pays both.
    assert 1_600_000 + 854_286 == 2_454_286


def test_a_contract_covers_only_what_both_meters_measured():
    usages = [MeterUsage("angel", 0, 700), MeterUsage("carlos", 1_500, 0)]
    (line,) = settle_contracts(usages, [terms(tolerance_bp=None)]).lines
    assert (line.expected_wh, line.delivered_wh, line.amount_uk) == (1_500, 700, 560_000)

    usages = [MeterUsage("angel", 0, 5_000), MeterUsage("carlos", 400, 0)]
    market = settle_contracts(usages, [terms()])
    assert market.lines[0].delivered_wh == 400
    assert market.remainder == [MeterUsage("angel", 0, 4_600), MeterUsage("carlos", 0, 0)]


def test_meters_that_did_not_report_deliver_nothing():
    market = settle_contracts([MeterUsage("carlos", 1_000, 0)], [terms()])
    assert market.lines[0][5:9] == (0, 1_000, 0, 0)  # no seller export, nothing delivered
    assert market.remainder == [MeterUsage("carlos", 1_000, 0)]


def test_payments_round_the_running_total_so_they_sum_to_the_cost_of_all_delivered():
    # 1 Wh at 1,500 µk per kWh costs 1.5 µk: 2 µk rounded alone, three times 6 µk,
    # but 3 Wh cost 4.5 → 5 µk. The running total pays 2, 1, 2.
    paid, before = [], 0
    for _ in range(3):
        (line,) = settle_contracts([MeterUsage("s", 0, 1), MeterUsage("b", 1, 0)], [
            ContractTerms(7, "s", "b", 1_500, 1, delivered_before_wh=before, funds_uk=100)
        ]).lines  # fmt: skip
        paid.append(line.amount_uk)
        before += line.delivered_wh
    assert paid == [2, 1, 2]
    assert sum(paid) == cost_uk(3, 1_500) == 5


def test_the_escrow_limits_the_delivery():
    # 0.8 k per kWh: 1 k buys 1,250 Wh; the rest of Carlos's import goes to the pool.
    market = settle_contracts(SEED, [terms(funds_uk=1_000_000)])
    assert (market.lines[0].delivered_wh, market.lines[0].amount_uk) == (1_250, 1_000_000)
    assert market.remainder[2] == MeterUsage("carlos", 1_750, 0)
    assert affordable_wh(0, 0, 800_000) == 0
    assert affordable_wh(5, 0, 0) is None  # free energy needs no funds


def test_a_shortfall_beyond_the_tolerance_is_a_breach_and_is_not_paid():
    usages = [MeterUsage("angel", 0, 1_900), MeterUsage("carlos", 3_000, 0)]
    # 5 % of 2,000 Wh is 100 Wh: 1,900 Wh out is inside, 1,899 Wh is not.
    inside = settle_contracts(usages, [terms(tolerance_bp=500)]).lines[0]
    assert (inside.breach, inside.delivered_wh) == ("", 1_900)
    usages[0] = MeterUsage("angel", 0, 1_899)
    market = settle_contracts(usages, [terms(tolerance_bp=500)])
    assert market.lines[0].breach == BREACH_SHORTFALL
    assert (market.lines[0].delivered_wh, market.lines[0].amount_uk) == (0, 0)
    assert market.remainder == usages  # everything goes through the pool


def test_a_voltage_outside_the_band_is_a_breach():
    band = terms(v_min_dv=2_070, v_max_dv=2_530)
    for seen, breach in [
        (Voltage(2_070, 2_530), ""),
        (Voltage(2_069, 2_400), BREACH_VOLTAGE),
        (Voltage(2_200, 2_531), BREACH_VOLTAGE),
        (Voltage(None, None), ""),  # the meter reported no voltage: nothing to judge
    ]:
        (line,) = settle_contracts(SEED, [band], {"carlos": seen}).lines
        assert line.breach == breach, seen
        assert line.delivered_wh == (0 if breach else 2_000)


def test_two_contracts_share_one_meter_without_counting_a_wh_twice():
    usages = [MeterUsage("angel", 0, 1_000), MeterUsage("carlos", 3_000, 0), MeterUsage("danny", 600, 0)]
    market = settle_contracts(usages, [
        terms(contract_id=2, buyer_meter="danny", cap_wh=900),
        terms(contract_id=1, cap_wh=800),
    ])  # fmt: skip
    assert [(line.contract_id, line.delivered_wh) for line in market.lines] == [(1, 800), (2, 200)]
    assert market.remainder == [MeterUsage("angel", 0, 0), MeterUsage("carlos", 2_200, 0), MeterUsage("danny", 400, 0)]


def test_an_empty_market_returns_the_usages_untouched():
    market = settle_contracts(SEED, [])
    assert market.remainder == SEED and market.lines == () and market.amount_uk == 0


@pytest.mark.parametrize(
    "bad",
    [
        dict(seller_meter="carlos"),
        dict(price_uk_per_kwh=-1),
        dict(cap_wh=1.5),
        dict(funds_uk=True),
        dict(v_min_dv=2_500, v_max_dv=2_000),
        dict(tolerance_bp=-5),
    ],
)
def test_bad_terms_are_refused(bad):
    with pytest.raises(ValueError):
        terms(**bad)


def test_a_contract_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        settle_contracts(SEED, [terms(), terms()])
