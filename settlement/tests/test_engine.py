"""The settlement engine, by worked examples (plain pytest, no database).

Every expected figure is worked out by hand in the comment above it. Units:
Wh for energy, µk for money (1 k = 1,000,000 µk), tariffs in µk per kWh.
"""

from __future__ import annotations

import gc

import pytest

from settlement.domain import (
    ALERT_IMPORT_EXCEEDS_EXPORT,
    ALERT_LOSS_HIGH,
    ALERT_NO_EXPORT,
    GridRules,
    IntervalSettlement,
    MeterUsage,
    SettlementLine,
    settle_interval,
)

DEFAULT = GridRules()  # 1 k per kWh, 0.01 k fixed fee, no percentage, 15 % loss alert
NO_FEE = GridRules(fee_fixed_uk=0)


def lines_by_meter(result: IntervalSettlement) -> dict[str, SettlementLine]:
    return {line.meter: line for line in result.lines}


def test_the_seed_example_to_the_micro_coin():
    # Carlos imports 3 kWh and Danny 2 kWh at 1 k/kWh: the pool is 5 k. The fee
    # is 0.01 k, so 4.99 k goes to Angel (3 kWh) and Bennie (2.5 kWh):
    # 4,990,000 × 3/5.5 = 2,721,818.18 and × 2.5/5.5 = 2,268,181.82; the one
    # µk left over goes to the larger remainder (Bennie's .82).
    result = settle_interval(
        [
            MeterUsage("Carlos", 3000, 0),
            MeterUsage("Danny", 2000, 0),
            MeterUsage("Angel", 0, 3000),
            MeterUsage("Bennie", 0, 2500),
        ],
        DEFAULT,
    )

    assert result.lines == (
        SettlementLine("Angel", 0, 3000, 0, 2_721_818),
        SettlementLine("Bennie", 0, 2500, 0, 2_268_182),
        SettlementLine("Carlos", 3000, 0, 3_000_000, 0),
        SettlementLine("Danny", 2000, 0, 2_000_000, 0),
    )
    assert all(type(line) is SettlementLine for line in result.lines)
    assert result.lines[0].credit_uk == 2_721_818
    assert (result.carry_in_uk, result.pool_uk, result.fee_uk) == (0, 5_000_000, 10_000)
    assert (result.credited_uk, result.carry_out_uk) == (4_990_000, 0)
    # 500 Wh of 5,500 lost: 909.09 bp, under the 1,500 bp alert.
    assert (result.import_wh, result.export_wh, result.loss_wh, result.loss_bp) == (5000, 5500, 500, 909)
    assert result.alerts == ()


def test_three_homes_one_street_light_a_sunny_hour():
    # Tariff 0.25 k/kWh. Ada's roof exports 1.9 kWh while her house imports
    # 0.3 kWh (a prosumer), Bo's roof exports 0.9 kWh, Cy imports 2.1 kWh and
    # the street light 0.1 kWh. Debits 75,000 + 525,000 + 25,000 = 625,000 µk;
    # less the 10,000 fee, 615,000 to share: Ada 615,000 × 1900/2800 =
    # 417,321.43, Bo × 900/2800 = 197,678.57, and Bo's larger remainder takes
    # the last µk.
    rules = GridRules(tariff_uk_per_kwh=250_000)
    result = settle_interval(
        [
            MeterUsage("L-01", 100, 0),
            MeterUsage("H-cy", 2100, 0),
            MeterUsage("H-bo", 0, 900),
            MeterUsage("H-ada", 300, 1900),
        ],
        rules,
    )

    assert result.lines == (
        SettlementLine("H-ada", 300, 1900, 75_000, 417_321),
        SettlementLine("H-bo", 0, 900, 0, 197_679),
        SettlementLine("H-cy", 2100, 0, 525_000, 0),
        SettlementLine("L-01", 100, 0, 25_000, 0),
    )
    assert (result.pool_uk, result.fee_uk, result.credited_uk, result.carry_out_uk) == (625_000, 10_000, 615_000, 0)
    # 300 Wh of 2,800 lost: 1,071.43 bp.
    assert (result.loss_wh, result.loss_bp, result.alerts) == (300, 1071, ())


def test_a_prosumer_pays_for_its_import_and_earns_for_its_export_without_netting():
    # One prosumer imports and exports 1 kWh each: it pays 1 k into the pool
    # and, being the only exporter, earns all of the pool less the fee. The
    # two directions stay apart (debit 1,000,000 and credit 990,000), not a
    # net debit of 10,000.
    result = settle_interval([MeterUsage("P-1", 1000, 1000)], DEFAULT)

    assert result.lines == (SettlementLine("P-1", 1000, 1000, 1_000_000, 990_000),)
    assert (result.loss_wh, result.loss_bp, result.alerts) == (0, 0, ())


def test_a_night_with_no_export_carries_the_pool_to_the_next_interval():
    # Two homes import 0.5 and 0.7 kWh: pool 1.2 k, fee 0.01 k, nobody to pay,
    # so 1.19 k stays in the pool.
    result = settle_interval([MeterUsage("H-1", 500, 0), MeterUsage("H-2", 700, 0)], DEFAULT)

    assert [line.credit_uk for line in result.lines] == [0, 0]
    assert (result.pool_uk, result.fee_uk, result.credited_uk, result.carry_out_uk) == (
        1_200_000,
        10_000,
        0,
        1_190_000,
    )
    assert (result.loss_wh, result.loss_bp) == (-1200, None)
    assert result.alerts == (ALERT_NO_EXPORT,)


def test_the_morning_after_pays_the_carried_pool_to_the_first_exporter():
    # The night's 1.19 k comes in; a home imports 0.4 kWh and a roof exports
    # 1 kWh: pool 1,190,000 + 400,000 = 1,590,000, fee 10,000, the roof gets
    # 1,580,000. 600 of 1,000 Wh lost: 6,000 bp, a loss alert.
    result = settle_interval([MeterUsage("H-1", 400, 0), MeterUsage("R-1", 0, 1000)], DEFAULT, carry_in_uk=1_190_000)

    assert (result.carry_in_uk, result.pool_uk, result.fee_uk, result.carry_out_uk) == (
        1_190_000,
        1_590_000,
        10_000,
        0,
    )
    assert lines_by_meter(result)["R-1"].credit_uk == 1_580_000
    assert (result.loss_bp, result.alerts) == (6000, (ALERT_LOSS_HIGH,))


def test_an_interval_without_readings_keeps_the_carry_less_the_fixed_fee():
    assert settle_interval([], DEFAULT, carry_in_uk=1_000_000) == IntervalSettlement(
        lines=(),
        carry_in_uk=1_000_000,
        pool_uk=1_000_000,
        fee_uk=10_000,
        credited_uk=0,
        carry_out_uk=990_000,
        import_wh=0,
        export_wh=0,
        loss_wh=0,
        loss_bp=None,
        alerts=(),
    )
    empty = settle_interval([], DEFAULT)
    assert (empty.pool_uk, empty.fee_uk, empty.carry_out_uk, empty.alerts) == (0, 0, 0, ())


def test_a_fee_larger_than_the_pool_takes_the_pool_and_no_more():
    # 5 Wh at 1 k/kWh is 5,000 µk, less than the 10,000 fixed fee.
    result = settle_interval([MeterUsage("H-1", 5, 0), MeterUsage("R-1", 0, 100)], DEFAULT)

    assert (result.pool_uk, result.fee_uk, result.credited_uk, result.carry_out_uk) == (5000, 5000, 0, 0)
    assert lines_by_meter(result)["R-1"].credit_uk == 0


@pytest.mark.parametrize(
    ("fee_fixed_uk", "fee_bp", "pool_uk", "fee_uk"),
    [
        (10_000, 250, 5_000_000, 135_000),  # 10,000 + 2.5 % of 5 k
        (0, 10_000, 5_000_000, 5_000_000),  # 100 %: the utility takes it all
        (1, 10_000, 5_000_000, 5_000_000),  # ... and never more than the pool
        (0, 2500, 2, 1),  # 25 % of 2 µk = 0.5 → rounds half up to 1
        (0, 2500, 1, 0),  # 25 % of 1 µk = 0.25 → 0
        (0, 3333, 3, 1),  # 0.9999 → 1
    ],
)
def test_the_percentage_fee_is_rounded_half_up(fee_fixed_uk, fee_bp, pool_uk, fee_uk):
    # The carry sets the pool to the exact µk; one exporter takes what the fee leaves.
    rules = GridRules(fee_fixed_uk=fee_fixed_uk, fee_bp=fee_bp)
    result = settle_interval([MeterUsage("R-1", 0, 1000)], rules, carry_in_uk=pool_uk)

    assert (result.pool_uk, result.fee_uk) == (pool_uk, fee_uk)
    assert result.lines[0].credit_uk == pool_uk - fee_uk


@pytest.mark.parametrize(
    ("tariff_uk_per_kwh", "import_wh", "debit_uk"),
    [
        (500, 1, 1),  # 0.5 µk → 1 (half up)
        (499, 1, 0),  # 0.499 µk → 0
        (500, 3, 2),  # 1.5 µk → 2
        (1500, 1, 2),  # 1.5 µk → 2
        (1499, 1, 1),  # 1.499 µk → 1
        (333_333, 3, 1000),  # 999.999 µk → 1,000
        (0, 5000, 0),  # free energy
        (1_000_000, 0, 0),
    ],
)
def test_each_debit_is_rounded_half_up_to_the_micro_coin(tariff_uk_per_kwh, import_wh, debit_uk):
    rules = GridRules(tariff_uk_per_kwh=tariff_uk_per_kwh, fee_fixed_uk=0)
    result = settle_interval([MeterUsage("H-1", import_wh, 0)], rules)

    assert result.lines[0].debit_uk == debit_uk
    assert result.pool_uk == debit_uk


def test_a_tie_for_the_last_micro_coin_goes_to_the_lower_meter_id():
    # 1 µk over two equal exporters: both remainders are 0.5.
    result = settle_interval([MeterUsage("M-b", 0, 10), MeterUsage("M-a", 0, 10)], NO_FEE, carry_in_uk=1)
    assert [(line.meter, line.credit_uk) for line in result.lines] == [("M-a", 1), ("M-b", 0)]


def test_tie_breaking_uses_string_order_not_numeric_order():
    # "M-10" < "M-9" as strings: M-10 wins the tie although 10 > 9.
    result = settle_interval([MeterUsage("M-9", 0, 7), MeterUsage("M-10", 0, 7)], NO_FEE, carry_in_uk=1)
    assert lines_by_meter(result)["M-10"].credit_uk == 1
    assert lines_by_meter(result)["M-9"].credit_uk == 0


def test_two_leftover_units_go_to_the_two_lowest_ids_of_a_three_way_tie():
    # 5 µk over three equal exporters: 1 each, and 2 left over.
    usages = [MeterUsage("C", 0, 4), MeterUsage("A", 0, 4), MeterUsage("B", 0, 4)]
    result = settle_interval(usages, NO_FEE, carry_in_uk=5)
    assert [line.credit_uk for line in result.lines] == [2, 2, 1]


def test_a_larger_remainder_beats_a_lower_id():
    # 10 µk over exports 1 and 2: 3.33 and 6.67; the last µk goes to "Z"
    # (remainder 0.67) although "A" has the lower id.
    result = settle_interval([MeterUsage("A", 0, 1), MeterUsage("Z", 0, 2)], NO_FEE, carry_in_uk=10)
    assert [line.credit_uk for line in result.lines] == [3, 7]


@pytest.mark.parametrize(
    ("import_wh", "export_wh", "loss_bp"),
    [
        (2, 3, 3333),  # 1/3 lost: 3,333.33 bp
        (1, 3, 6667),  # 2/3 lost: 6,666.67 bp
        (19_999, 20_000, 1),  # 0.5 bp rounds up
        (20_001, 20_000, -1),  # -0.5 bp rounds away from zero, like Decimal's ROUND_HALF_UP
        (20_003, 20_000, -2),  # -1.5 bp → -2
        (20_002, 20_000, -1),  # -1.0 bp
        (0, 500, 10_000),  # everything exported was lost
        (500, 500, 0),
    ],
)
def test_loss_in_basis_points_of_the_export(import_wh, export_wh, loss_bp):
    result = settle_interval([MeterUsage("H-1", import_wh, 0), MeterUsage("R-1", 0, export_wh)], DEFAULT)
    assert result.loss_wh == export_wh - import_wh
    assert result.loss_bp == loss_bp


@pytest.mark.parametrize(
    ("import_wh", "export_wh", "loss_alert_bp", "alerts"),
    [
        # loss_high: strictly above the threshold.
        (8500, 10_000, 1500, ()),  # exactly 1,500 bp
        (8499, 10_000, 1500, (ALERT_LOSS_HIGH,)),  # 1,501 bp
        (10_000, 10_000, 0, ()),  # no loss, even at a zero threshold
        (9999, 10_000, 0, (ALERT_LOSS_HIGH,)),  # 1 bp over a zero threshold
        (0, 10_000, 10_000, ()),  # 10,000 bp is not above 10,000
        # import_exceeds_export: import strictly above a positive export.
        (10_000, 10_000, 1500, ()),
        (10_001, 10_000, 1500, (ALERT_IMPORT_EXCEEDS_EXPORT,)),
        # no_export: import with no export at all; a silent hour is no alert.
        (1, 0, 1500, (ALERT_NO_EXPORT,)),
        (0, 0, 1500, ()),
    ],
)
def test_alerts_fire_on_one_side_of_their_threshold_only(import_wh, export_wh, loss_alert_bp, alerts):
    rules = GridRules(loss_alert_bp=loss_alert_bp)
    usages = [MeterUsage("H-1", import_wh, 0), MeterUsage("R-1", 0, export_wh)]
    assert settle_interval(usages, rules).alerts == alerts


def test_the_result_does_not_depend_on_the_order_or_container_of_the_usages():
    usages = [MeterUsage("Carlos", 3000, 0), MeterUsage("Angel", 0, 3000), MeterUsage("Bennie", 0, 2500)]
    expected = settle_interval(usages, DEFAULT)
    assert settle_interval(reversed(usages), DEFAULT) == expected
    assert settle_interval(tuple(usages), DEFAULT) == expected
    assert settle_interval((usage for usage in usages), DEFAULT) == expected


@pytest.mark.parametrize(
    ("usages", "message"),
    [
        ([MeterUsage("H-1", -1, 0)], "cannot be negative"),
        ([MeterUsage("H-1", 0, -1)], "cannot be negative"),
        ([MeterUsage("H-1", 1.0, 0)], "integer Wh"),
        ([MeterUsage("H-1", 0, 2.5)], "integer Wh"),
        ([MeterUsage("H-1", True, 0)], "integer Wh"),
        ([MeterUsage("H-1", "5", 0)], "integer Wh"),
        ([MeterUsage("H-1", None, 0)], "integer Wh"),
        ([MeterUsage("H-1", 1, 0), MeterUsage("H-1", 2, 0)], "appears twice"),
        ([MeterUsage("", 1, 0)], "non-empty string"),
        ([MeterUsage(7, 1, 0)], "non-empty string"),
        ([MeterUsage("H-1", 1, 0), MeterUsage(7, 1, 0)], "non-empty string"),
        ([("H-1", 1, 0)], "MeterUsage"),
    ],
)
def test_bad_usages_are_refused_with_a_reason(usages, message):
    with pytest.raises(ValueError, match=message):
        settle_interval(usages, DEFAULT)


@pytest.mark.parametrize("carry_in_uk", [-1, 1.0, True, "5", None])
def test_a_bad_carry_is_refused(carry_in_uk):
    with pytest.raises(ValueError, match="carry_in_uk"):
        settle_interval([MeterUsage("H-1", 1, 0)], DEFAULT, carry_in_uk=carry_in_uk)


@pytest.mark.parametrize(
    "rules",
    [
        {"tariff_uk_per_kwh": -1},
        {"fee_fixed_uk": -1},
        {"fee_bp": -1},
        {"fee_bp": 10_001},
        {"loss_alert_bp": -1},
        {"tariff_uk_per_kwh": 1.5},
        {"fee_fixed_uk": True},
    ],
)
def test_bad_rules_are_refused(rules):
    with pytest.raises(ValueError):
        GridRules(**rules)


def test_settling_leaves_the_garbage_collector_as_it_found_it():
    usages = [MeterUsage(f"M-{i}", i, 0) for i in range(2000)]
    settle_interval(usages, DEFAULT)
    assert gc.isenabled()
    gc.disable()
    try:
        settle_interval(usages, DEFAULT)
        assert not gc.isenabled()
    finally:
        gc.enable()
