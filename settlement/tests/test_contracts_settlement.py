"""Settlement with market contracts on the real database: contracts settle
first at their own price for what both meters measured, the rest goes
through the pool, and every µk is accounted for (``ledger_problems``)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.models import Contract, ContractStatus, Delivery, PaymentState
from marketplace.services import (
    auction_close,
    bid_place,
    bilateral_offer,
    contracts_review,
    limits_publish,
    market_tick,
    offer_create,
)
from marketplace.tests.helpers import NOW, K, coins_give, hours, market_make, wallet_uk
from meters.models import MeterDecision, Reading
from meters.tests.factories import reading_make
from settlement.models import SettlementLine, SettlementRun
from settlement.services import settlement_close
from utility.ledger.models import Transaction
from utility.ledger.selectors import account_balance, ledger_problems

GRACE = timedelta(minutes=10)


def due(start):
    return start + timedelta(hours=1) + GRACE


@pytest.fixture
def market(db, settings):
    settings.MQTT_PUBLISHER = "memory"
    return market_make("sx")


def seed_readings(market, start, *, angel=3_000, bennie=2_500, carlos=3_000, danny=2_000) -> None:
    reading_make(market.meters["angel"], start, export_wh=angel)
    reading_make(market.meters["bennie"], start, export_wh=bennie)
    reading_make(market.meters["carlos"], start, import_wh=carlos)
    reading_make(market.meters["danny"], start, import_wh=danny)


def settle_through(market, last: int) -> None:
    """Settle every interval from the grid's start up to ``hours(last)``; the
    intervals without readings settle empty."""
    for n in range(0, last + 1):
        settlement_close(market.grid.pk, hours(n), due(hours(n)))


def auction_won_by_carlos(market, price=800_000, energy_wh=2_000) -> Contract:
    """Angel auctions ``energy_wh`` for [01:00, 03:00); Carlos wins at ``price``."""
    coins_give(market.users["carlos"], 10 * K)
    offer = offer_create(market.users["angel"], market.meters["angel"], energy_wh=energy_wh, delivery_start=hours(1),
                         delivery_end=hours(3), start_price_uk_per_kwh=500_000, ends_at=hours(1), now=NOW)  # fmt: skip
    bid_place(market.users["carlos"], offer.pk, market.meters["carlos"], price, NOW)
    return auction_close(offer.pk, hours(1))


def balances(market) -> dict[str, int]:
    found = {name: account_balance(meter.account_id) for name, meter in market.meters.items()}
    found["pool"] = account_balance(market.grid.pool_account_id)
    found["fee"] = account_balance(market.grid.fee_account_id)
    return found


def test_the_seed_example_with_an_auctioned_contract_settles_to_the_micro_coin(market):
    contract = auction_won_by_carlos(market)
    assert wallet_uk(market.users["carlos"]) == 10 * K - 1_600_000  # the winning hold
    settle_through(market, 0)
    seed_readings(market, hours(1))

    settlement_close(market.grid.pk, hours(1), due(hours(1)))

    # Contract first: Angel → Carlos 2 kWh at 0.8 k = 1.6 k from the escrow.
    # Pool: Carlos 1 kWh + Danny 2 kWh = 3 k, fee 0.01 k, 2.99 k over Angel 1 kWh, Bennie 2.5 kWh.
    assert balances(market) == {
        "angel": 1_600_000 + 854_286,
        "bennie": 2_135_714,
        "carlos": -1_000_000,
        "danny": -2_000_000,
        "pool": 0,
        "fee": 10_000,
    }
    assert account_balance(contract.escrow_account_id) == 0
    run = SettlementRun.objects.get(interval_start=hours(1))
    assert (run.import_wh, run.export_wh, run.pool_uk, run.loss_wh) == (3_000, 3_500, 3_000_000, 500)
    lines = dict(SettlementLine.objects.filter(run=run).values_list("meter__public_id", "import_wh"))
    assert lines["sx-carlos"] == 1_000  # the pool's part only: the contract's 2 kWh are not counted twice
    delivery = Delivery.objects.get()
    assert (delivery.delivered_wh, delivery.amount_uk, delivery.payment) == (2_000, 1_600_000, PaymentState.NONE)
    # One balanced ledger transaction holds the pool and the contract.
    txn = Transaction.objects.get(pk=run.transaction_id)
    assert sum(txn.entries.values_list("amount_uk", flat=True)) == 0
    assert txn.entries.filter(account_id=contract.escrow_account_id).get().amount_uk == -1_600_000
    assert ledger_problems() == []


def test_an_auctioned_contract_delivers_over_its_window_and_refunds_what_was_not_delivered(market):
    contract = auction_won_by_carlos(market, price=700_000, energy_wh=3_000)  # 2.1 k held
    settle_through(market, 0)
    seed_readings(market, hours(1), angel=1_000, carlos=1_200)  # the seller exports only 1 kWh
    seed_readings(market, hours(2), angel=5_000, carlos=400)  # the buyer takes only 0.4 kWh
    settlement_close(market.grid.pk, hours(1), due(hours(1)))
    settlement_close(market.grid.pk, hours(2), due(hours(2)))

    market_tick(due(hours(2)))

    contract.refresh_from_db()
    assert (contract.status, contract.delivered_wh, contract.paid_uk) == (ContractStatus.COMPLETED, 1_400, 980_000)
    assert account_balance(contract.escrow_account_id) == 0
    assert wallet_uk(market.users["carlos"]) == 10 * K - 980_000
    assert ledger_problems() == []


def bilateral_for_danny(market, *, wallet_uk_=5 * K, **limits) -> Contract:
    """Danny's limits for [01:00, 09:00); Bennie sells 500 Wh per interval of [01:00, 05:00) at 0.8 k."""
    coins_give(market.users["danny"], wallet_uk_)
    limit = limits_publish(
        market.users["danny"], market.meters["danny"], period_start=hours(1), period_end=hours(9),
        max_price_uk_per_kwh=900_000, min_payment_uk=0, max_payment_uk=900_000, max_deposit_uk=2 * K, now=NOW,
        **limits,
    )  # fmt: skip
    return bilateral_offer(market.users["bennie"], market.meters["bennie"], limit.pk, price_uk_per_kwh=800_000,
                           wh_per_interval=500, delivery_start=hours(1), delivery_end=hours(5), deposit_uk=1 * K,
                           now=NOW)  # fmt: skip


def test_a_bilateral_contract_is_paid_each_interval_then_breaches_when_the_seller_under_delivers(market):
    contract = bilateral_for_danny(market)
    assert contract.status == ContractStatus.ACTIVE
    settle_through(market, 0)
    seed_readings(market, hours(1))  # Bennie 2.5 kWh out, Danny 2 kWh in: 500 Wh delivered
    settlement_close(market.grid.pk, hours(1), due(hours(1)))
    contracts_review(market.grid, due(hours(1)))
    assert account_balance(market.meters["bennie"].account_id) > 400_000  # 0.4 k contract + pool share
    assert wallet_uk(market.users["danny"]) == 4 * K - 400_000
    assert account_balance(contract.escrow_account_id) == 1 * K  # refilled

    # Dual metering: Bennie's meter says 450 Wh out, Danny's 2 kWh in: 50 Wh short of 500 > 5 %.
    seed_readings(market, hours(2), bennie=450)
    settlement_close(market.grid.pk, hours(2), due(hours(2)))

    contract.refresh_from_db()
    assert (contract.status, contract.breach, contract.breach_interval) == (
        ContractStatus.BREACHED, "shortfall", hours(2),
    )  # fmt: skip
    assert Delivery.objects.get(interval_start=hours(2)).amount_uk == 0  # the buyer stops paying
    run = SettlementRun.objects.get(interval_start=hours(2))
    assert run.import_wh == 5_000  # all of the interval's import went through the pool

    seed_readings(market, hours(3))
    settlement_close(market.grid.pk, hours(3), due(hours(3)))
    assert not Delivery.objects.filter(interval_start=hours(3)).exists()  # no more contract intervals
    contracts_review(market.grid, due(hours(3)))
    assert account_balance(contract.escrow_account_id) == 0
    assert wallet_uk(market.users["danny"]) == 5 * K - 400_000  # the deposit came back
    assert ledger_problems() == []


def test_a_voltage_outside_the_band_is_a_breach(market):
    contract = bilateral_for_danny(market)
    settle_through(market, 0)
    seed_readings(market, hours(1))
    Reading.objects.filter(meter=market.meters["danny"]).update(v_min_dv=2_050, v_max_dv=2_400)
    settlement_close(market.grid.pk, hours(1), due(hours(1)))

    contract.refresh_from_db()
    assert (contract.status, contract.breach) == (ContractStatus.BREACHED, "voltage_band")
    assert "2050–2400 dV" in contract.breach_detail
    assert account_balance(market.meters["danny"].account_id) == -2_000_000  # all 2 kWh at the pool's tariff
    assert ledger_problems() == []


def test_deposit_connects_and_a_missed_payment_disconnects(market):
    contract = bilateral_for_danny(market, wallet_uk_=1 * K)  # the deposit, and not a µk more
    assert MeterDecision.objects.filter(meter=market.meters["danny"]).get().reason == "contract_deposit_paid"
    settle_through(market, 0)
    seed_readings(market, hours(1))
    settlement_close(market.grid.pk, hours(1), due(hours(1)))

    market_tick(due(hours(1)))

    contract.refresh_from_db()
    assert contract.status == ContractStatus.PAYMENT_MISSED
    last = MeterDecision.objects.filter(meter=market.meters["danny"]).latest("seq")
    assert (last.state, last.reason) == ("disconnect", "contract_payment_missed")
    assert wallet_uk(market.users["danny"]) == 600_000  # the deposit paid the interval; the rest came back
    # The next interval is the pool's alone.
    seed_readings(market, hours(2))
    settlement_close(market.grid.pk, hours(2), due(hours(2)))
    assert Delivery.objects.count() == 1
    assert ledger_problems() == []


def test_settling_an_interval_again_records_no_second_delivery(market):
    auction_won_by_carlos(market)
    settle_through(market, 0)
    seed_readings(market, hours(1))
    settlement_close(market.grid.pk, hours(1), due(hours(1)))
    before = balances(market)
    closed = settlement_close(market.grid.pk, hours(1), due(hours(1)) + timedelta(hours=5))
    assert closed.settled_now is False
    assert Delivery.objects.count() == 1 and balances(market) == before


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=st.integers(1, 3_000_000),
    energy_wh=st.integers(1_000, 6_000),  # at 1 µk per kWh still worth a µk
    angel=st.integers(0, 5_000),
    carlos=st.integers(0, 5_000),
    danny=st.integers(0, 5_000),
)
def test_settling_with_a_contract_conserves_every_micro_coin(db, settings, price, energy_wh, angel, carlos, danny):
    settings.MQTT_PUBLISHER = "memory"
    market = market_make(f"h{uuid.uuid4().hex[:8]}")
    coins_give(market.users["carlos"], 20_000 * K)
    offer = offer_create(market.users["angel"], market.meters["angel"], energy_wh=energy_wh, delivery_start=hours(1),
                         delivery_end=hours(2), start_price_uk_per_kwh=1, ends_at=hours(1), now=NOW)  # fmt: skip
    bid_place(market.users["carlos"], offer.pk, market.meters["carlos"], price, NOW)
    contract = auction_close(offer.pk, hours(1))
    settle_through(market, 0)
    seed_readings(market, hours(1), angel=angel, carlos=carlos, danny=danny)
    before = {**balances(market), "escrow": account_balance(contract.escrow_account_id)}

    settlement_close(market.grid.pk, hours(1), due(hours(1)))

    after = {**balances(market), "escrow": account_balance(contract.escrow_account_id)}
    delivery = Delivery.objects.get(contract=contract)
    assert delivery.delivered_wh == min(energy_wh, angel, carlos)
    assert before["escrow"] - after["escrow"] == delivery.amount_uk  # the buyer's side...
    run = SettlementRun.objects.get(grid=market.grid, interval_start=hours(1))
    assert (
        after["angel"] - before["angel"]
        == delivery.amount_uk + SettlementLine.objects.get(run=run, meter=market.meters["angel"]).credit_uk
    )  # ...equals the seller's contract credit, beside its pool share
    assert sum(after.values()) == sum(before.values())
    assert ledger_problems() == []
