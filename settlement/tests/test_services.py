"""``settlement_close`` and ``grid_settle_due`` on the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meters.models import Grid, Meter, Reading
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make
from settlement.models import RunStatus, SettlementLine, SettlementRun
from settlement.services import Closed, SettlementRefused, grid_settle_due, settlement_close, settlement_key
from utility.ledger.models import Entry, Transaction
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.tests.helpers import run_concurrently

# Every interval is due 10 minutes (the default grace) after it ends.
GRACE = timedelta(minutes=10)


def _due(interval_start):
    """The first instant at which ``interval_start`` may be settled."""
    return interval_start + HOUR + GRACE


def _seed_grid() -> tuple[Grid, dict[str, Meter]]:
    """The example in SPEC.md: Carlos and Danny import, Angel and Bennie export."""
    grid = grid_make("demo")
    meters = {
        "carlos": meter_make(grid, "carlos", "consumer"),
        "danny": meter_make(grid, "danny", "consumer"),
        "angel": meter_make(grid, "angel", "producer"),
        "bennie": meter_make(grid, "bennie", "producer"),
    }
    return grid, meters


def _seed_readings(meters: dict[str, Meter], start=T0) -> None:
    reading_make(meters["carlos"], start, import_wh=3_000)
    reading_make(meters["danny"], start, import_wh=2_000)
    reading_make(meters["angel"], start, export_wh=3_000)
    reading_make(meters["bennie"], start, export_wh=2_500)


def _balances(grid: Grid, meters: dict[str, Meter]) -> dict[str, int]:
    found = {name: account_balance(meter.account_id) for name, meter in meters.items()}
    found["pool"] = account_balance(grid.pool_account_id)
    found["fee"] = account_balance(grid.fee_account_id)
    return found


SEED_BALANCES = {
    "carlos": -3_000_000,
    "danny": -2_000_000,
    "angel": 2_721_818,
    "bennie": 2_268_182,
    "pool": 0,
    "fee": 10_000,
}


@pytest.mark.django_db
def test_the_seed_example_settles_to_the_micro_coin():
    grid, meters = _seed_grid()
    _seed_readings(meters)

    closed = settlement_close(grid.pk, T0, _due(T0))

    assert closed.settled_now is True
    assert _balances(grid, meters) == SEED_BALANCES
    run = SettlementRun.objects.get()
    assert (run.status, run.interval_start, run.interval_end, run.settled_at) == (
        RunStatus.SETTLED,
        T0,
        T0 + HOUR,
        _due(T0),
    )
    assert (run.pool_uk, run.fee_uk, run.credited_uk, run.carry_in_uk, run.carry_out_uk) == (
        5_000_000,
        10_000,
        4_990_000,
        0,
        0,
    )
    assert (run.import_wh, run.export_wh, run.loss_wh, run.loss_bp, run.alerts) == (5_000, 5_500, 500, 909, [])
    assert (run.meter_count, run.late_reading_count, run.tariff_uk_per_kwh) == (4, 0, 1_000_000)
    lines = {ln.meter.public_id: (ln.import_wh, ln.export_wh, ln.debit_uk, ln.credit_uk) for ln in run.lines.all()}
    assert lines == {
        "angel": (0, 3_000, 0, 2_721_818),
        "bennie": (0, 2_500, 0, 2_268_182),
        "carlos": (3_000, 0, 3_000_000, 0),
        "danny": (2_000, 0, 2_000_000, 0),
    }
    assert run.transaction.idempotency_key == settlement_key(grid, T0) == "settlement:demo:2026-01-01T00:00:00Z"
    assert run.transaction.entries.count() == 5  # four meters and the fee; the pool ends where it started
    assert set(Reading.objects.values_list("settled_in", flat=True)) == {T0}
    grid.refresh_from_db()
    assert grid.settled_through == T0 + HOUR
    assert ledger_problems() == []


@pytest.mark.django_db
def test_settling_twice_is_a_no_op():
    grid, meters = _seed_grid()
    _seed_readings(meters)
    first = settlement_close(grid.pk, T0, _due(T0))

    again = settlement_close(grid.pk, T0, _due(T0) + HOUR)

    assert again.settled_now is False
    assert again.run.pk == first.run.pk
    assert again.run.settled_at == _due(T0)
    assert Transaction.objects.count() == 1
    assert SettlementLine.objects.count() == 4
    assert _balances(grid, meters) == SEED_BALANCES


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_closes_of_one_interval_settle_it_once():
    grid, meters = _seed_grid()
    _seed_readings(meters)

    results = run_concurrently([lambda: settlement_close(grid.pk, T0, _due(T0)) for _ in range(2)])

    assert all(isinstance(r, Closed) for r in results), results
    assert sorted(r.settled_now for r in results) == [False, True]
    assert results[0].run.pk == results[1].run.pk
    assert SettlementRun.objects.count() == 1
    assert Transaction.objects.count() == 1
    assert SettlementLine.objects.count() == 4
    assert _balances(grid, meters) == SEED_BALANCES
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_grid_settle_due_calls_settle_each_interval_once():
    grid, meters = _seed_grid()
    for hour in range(3):
        _seed_readings(meters, T0 + hour * HOUR)
    now = _due(T0 + 2 * HOUR)

    results = run_concurrently([lambda: grid_settle_due(grid.pk, now) for _ in range(3)])

    assert all(isinstance(r, list) for r in results), results
    assert sum(c.settled_now for r in results for c in r) == 3
    assert Transaction.objects.count() == 3
    assert _balances(grid, meters) == {name: 3 * amount for name, amount in SEED_BALANCES.items()}
    assert ledger_problems() == []


@pytest.mark.django_db
def test_a_late_reading_is_settled_in_the_next_interval_and_counted_once():
    grid, meters = _seed_grid()
    meters["eve"] = meter_make(grid, "eve", "consumer")
    _seed_readings(meters)
    settlement_close(grid.pk, T0, _due(T0))
    # Eve's first-hour import reaches the backend after that hour was settled.
    grid.refresh_from_db()
    late = reading_make(meters["eve"], T0, import_wh=1_000, received_at=_due(T0) + timedelta(minutes=5))
    assert late.late is True
    _seed_readings(meters, T0 + HOUR)

    assert settlement_close(grid.pk, T0, _due(T0 + HOUR)).settled_now is False
    closed = settlement_close(grid.pk, T0 + HOUR, _due(T0 + HOUR))

    run = closed.run
    assert (run.late_reading_count, run.pool_uk, run.import_wh) == (1, 6_000_000, 6_000)
    eve_line = run.lines.get(meter=meters["eve"])
    assert (eve_line.import_wh, eve_line.debit_uk) == (1_000, 1_000_000)
    late.refresh_from_db()
    assert late.settled_in == T0 + HOUR
    # 5,990,000 µk over 3000:2500 Wh: the one leftover µk goes to the larger remainder (Angel).
    assert _balances(grid, meters) == {
        "carlos": -6_000_000,
        "danny": -4_000_000,
        "eve": -1_000_000,
        "angel": 2_721_818 + 3_267_273,
        "bennie": 2_268_182 + 2_722_727,
        "pool": 0,
        "fee": 20_000,
    }
    # An empty third hour does not charge Eve again.
    settlement_close(grid.pk, T0 + 2 * HOUR, _due(T0 + 2 * HOUR))
    assert account_balance(meters["eve"].account_id) == -1_000_000
    assert Reading.objects.filter(settled_in__isnull=True).count() == 0
    assert ledger_problems() == []


@pytest.mark.django_db
def test_a_reading_stored_before_its_interval_is_settled_is_not_late():
    grid, meters = _seed_grid()
    reading = reading_make(meters["carlos"], T0, import_wh=500, received_at=T0 + HOUR + timedelta(minutes=9))

    settlement_close(grid.pk, T0, _due(T0))

    reading.refresh_from_db()
    assert (reading.late, reading.settled_in) == (False, T0)
    assert SettlementRun.objects.get().late_reading_count == 0


@pytest.mark.django_db
def test_a_reading_for_a_later_interval_waits_for_its_own():
    grid, meters = _seed_grid()
    _seed_readings(meters)
    early = reading_make(meters["carlos"], T0 + HOUR, import_wh=1_000)

    settlement_close(grid.pk, T0, _due(T0 + HOUR))

    early.refresh_from_db()
    assert early.settled_in is None
    assert account_balance(meters["carlos"].account_id) == -3_000_000


def _nothing_settled(grid: Grid) -> bool:
    grid.refresh_from_db()
    return (
        grid.settled_through is None
        and not SettlementRun.objects.exists()
        and not Transaction.objects.exists()
        and not Entry.objects.exists()
        and not Reading.objects.filter(settled_in__isnull=False).exists()
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "now", "message"),
    [
        (T0 + timedelta(minutes=30), _due(T0 + HOUR), "not aligned"),
        (T0 + timedelta(microseconds=1), _due(T0 + HOUR), "not aligned"),
        (T0, _due(T0) - timedelta(seconds=1), "not due until 2026-01-01T01:10:00Z"),
        (T0, T0 + timedelta(minutes=30), "not due"),
        (T0 + HOUR, _due(T0 + HOUR), "earlier interval 2026-01-01T00:00:00Z is still open"),
        (T0 - HOUR, _due(T0), "before the grid started"),
    ],
    ids=["half-hour", "microsecond", "one-second-early", "mid-interval", "out-of-order", "before-start"],
)
def test_refused_intervals_change_nothing(start, now, message):
    grid, meters = _seed_grid()
    _seed_readings(meters)
    _seed_readings(meters, T0 + HOUR)

    with pytest.raises(SettlementRefused, match=message):
        settlement_close(grid.pk, start, now)

    assert _nothing_settled(grid)
    assert all(balance == 0 for balance in _balances(grid, meters).values())


@pytest.mark.django_db
def test_naive_datetimes_are_refused_and_change_nothing():
    grid, meters = _seed_grid()
    _seed_readings(meters)

    with pytest.raises(ValueError, match="naive"):
        settlement_close(grid.pk, T0.replace(tzinfo=None), _due(T0))
    with pytest.raises(ValueError, match="naive"):
        settlement_close(grid.pk, T0, _due(T0).replace(tzinfo=None))

    assert _nothing_settled(grid)


@pytest.mark.django_db
def test_an_interval_with_no_export_carries_its_pool_to_the_next():
    grid, meters = _seed_grid()
    reading_make(meters["carlos"], T0, import_wh=2_000)
    reading_make(meters["carlos"], T0 + HOUR, import_wh=1_000)
    reading_make(meters["angel"], T0 + HOUR, export_wh=1_000)

    first = settlement_close(grid.pk, T0, _due(T0)).run
    assert (first.pool_uk, first.fee_uk, first.credited_uk, first.carry_out_uk) == (2_000_000, 10_000, 0, 1_990_000)
    assert first.alerts == ["no_export"]
    assert account_balance(grid.pool_account_id) == 1_990_000

    second = settlement_close(grid.pk, T0 + HOUR, _due(T0 + HOUR)).run

    assert (second.carry_in_uk, second.pool_uk, second.fee_uk, second.credited_uk, second.carry_out_uk) == (
        1_990_000,
        2_990_000,
        10_000,
        2_980_000,
        0,
    )
    assert _balances(grid, meters) == {
        "carlos": -3_000_000,
        "danny": 0,
        "angel": 2_980_000,
        "bennie": 0,
        "pool": 0,
        "fee": 20_000,
    }
    assert ledger_problems() == []


@pytest.mark.django_db
def test_a_prosumer_pays_for_its_import_and_earns_for_its_export():
    grid = grid_make("demo", fee_fixed_uk=0)
    home = meter_make(grid, "home", "prosumer")
    shop = meter_make(grid, "shop", "consumer")
    reading_make(home, T0, import_wh=1_000, export_wh=4_000)
    reading_make(shop, T0, import_wh=3_000)

    run = settlement_close(grid.pk, T0, _due(T0)).run

    line = run.lines.get(meter=home)
    assert (line.debit_uk, line.credit_uk) == (1_000_000, 4_000_000)
    assert account_balance(home.account_id) == 3_000_000
    assert account_balance(shop.account_id) == -3_000_000
    assert sorted(run.transaction.entries.filter(account=home.account).values_list("amount_uk", flat=True)) == [
        -1_000_000,
        4_000_000,
    ]
    assert ledger_problems() == []


@pytest.mark.django_db
def test_an_empty_interval_settles_without_a_ledger_transaction():
    grid, _ = _seed_grid()

    closed = settlement_close(grid.pk, T0, _due(T0))

    assert closed.settled_now is True
    assert (closed.run.transaction, closed.run.meter_count, closed.run.alerts) == (None, 0, [])
    assert not Transaction.objects.exists()
    grid.refresh_from_db()
    assert grid.settled_through == T0 + HOUR


@pytest.mark.django_db
def test_grid_settle_due_settles_every_due_interval_in_order():
    grid, meters = _seed_grid()
    _seed_readings(meters, T0)
    # The second hour is empty; the third has readings; the fourth is not due yet.
    _seed_readings(meters, T0 + 2 * HOUR)
    _seed_readings(meters, T0 + 3 * HOUR)
    now = _due(T0 + 2 * HOUR) + timedelta(minutes=49)

    closed = grid_settle_due(grid.pk, now)

    assert [c.run.interval_start for c in closed] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert all(c.settled_now for c in closed)
    assert _balances(grid, meters) == {name: 2 * amount for name, amount in SEED_BALANCES.items()}
    grid.refresh_from_db()
    assert grid.settled_through == T0 + 3 * HOUR
    unsettled = Reading.objects.filter(settled_in__isnull=True)
    assert set(unsettled.values_list("interval_start", flat=True)) == {T0 + 3 * HOUR}
    assert grid_settle_due(grid.pk, now) == []
    assert ledger_problems() == []


@pytest.mark.django_db
def test_grid_settle_due_with_nothing_due_does_nothing():
    grid, meters = _seed_grid()
    _seed_readings(meters)

    assert grid_settle_due(grid.pk, _due(T0) - timedelta(seconds=1)) == []

    assert _nothing_settled(grid)


@pytest.mark.django_db
def test_settlement_uses_the_grids_own_rules():
    grid = grid_make("demo", interval_s=900, tariff_uk_per_kwh=500_000, fee_fixed_uk=1_000, fee_bp=100)
    buyer = meter_make(grid, "buyer", "consumer")
    seller = meter_make(grid, "seller", "producer")
    reading_make(buyer, T0, import_wh=1_001)
    reading_make(seller, T0, export_wh=2_000)

    run = settlement_close(grid.pk, T0, T0 + timedelta(minutes=25)).run

    # 1001 Wh × 0.5 k/kWh = 500,500 µk; fee 1,000 + 1 % of it (5,005) = 6,005.
    assert (run.pool_uk, run.fee_uk, run.credited_uk) == (500_500, 6_005, 494_495)
    assert run.alerts == ["loss_high"]  # half the export is unaccounted for
    assert account_balance(seller.account_id) == 494_495
