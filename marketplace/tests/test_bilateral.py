"""Bilateral contracts under a buyer's limits: automatic acceptance, deposit
→ connect, payments per interval, missed payment → disconnect, a breach
stops the payments, and bad input that changes nothing.

Settlement itself is not called here (it sits above the marketplace): an
interval is played the way ``settlement_close`` plays it — the escrow pays
the seller's meter in the ledger and ``deliveries_record`` records it. The
real thing runs in ``settlement/tests/test_contracts_settlement.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.domain import DEPOSIT_HIGH, PRICE_HIGH
from marketplace.models import BuyerLimit, Contract, ContractStatus, Delivery, PaymentState
from marketplace.services import (
    DeliveryOutcome,
    MarketError,
    OfferRefused,
    bilateral_offer,
    contracts_review,
    deliveries_record,
    deposit_pay,
    limits_publish,
    limits_withdraw,
)
from meters.decisions import decision_topic
from meters.models import Grid, MeterDecision
from meters.supply import meter_force_state
from utility.ledger.models import Account
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import transaction_post

from .helpers import NOW, K, coins_give, hours, market_make, wallet_uk


@pytest.fixture
def market(db):
    return market_make()


def limits_make(market, **changes) -> BuyerLimit:
    """Danny buys for [01:00, 09:00): ≤ 0.9 k per kWh, 0.2–0.9 k per interval, deposit ≤ 2 k."""
    fields = dict(
        period_start=hours(1), period_end=hours(9), max_price_uk_per_kwh=900_000, min_payment_uk=200_000,
        max_payment_uk=900_000, max_deposit_uk=2_000_000, now=NOW,
    )  # fmt: skip
    fields.update(changes)
    return limits_publish(market.users["danny"], market.meters["danny"], **fields)


def offer(market, limit: BuyerLimit, **changes) -> Contract:
    """Bennie offers 500 Wh each interval of [01:00, 05:00) at 0.8 k per kWh, deposit 1 k."""
    fields = dict(
        price_uk_per_kwh=800_000, wh_per_interval=500, delivery_start=hours(1), delivery_end=hours(5),
        deposit_uk=1_000_000, now=NOW,
    )  # fmt: skip
    fields.update(changes)
    return bilateral_offer(market.users["bennie"], market.meters["bennie"], limit.pk, **fields)


def play_interval(contract: Contract, start, delivered_wh: int, *, breach: str = "", now=None) -> int:
    """What settlement does for one contract: escrow → seller meter, and the delivery recorded."""
    amount_uk = 0 if breach else (2 * delivered_wh * contract.price_uk_per_kwh + 1000) // 2000
    if amount_uk:
        transaction_post(
            f"test:settle:{contract.pk}:{start}", "settlement",
            [(contract.escrow_account_id, -amount_uk), (contract.seller_meter.account_id, amount_uk)],
        )  # fmt: skip
    deliveries_record(
        start,
        [DeliveryOutcome(contract.pk, 500, 500, delivered_wh, 500, 0 if breach else delivered_wh, amount_uk, breach)],
        now or start + timedelta(hours=1, minutes=10),
    )
    return amount_uk


def settled_through(market, moment) -> None:
    Grid.objects.filter(pk=market.grid.pk).update(settled_through=moment)


def decisions(meter) -> list[tuple[str, str]]:
    return list(MeterDecision.objects.filter(meter=meter).order_by("seq").values_list("state", "reason"))


def test_an_offer_inside_the_limits_is_accepted_its_deposit_paid_and_power_switched_on(
    market, memory, django_capture_on_commit_callbacks
):
    coins_give(market.users["danny"], 5 * K)
    limit = limits_make(market)
    with django_capture_on_commit_callbacks(execute=True):
        contract = offer(market, limit)

    assert contract.status == ContractStatus.ACTIVE and contract.activated_at == NOW
    assert (contract.energy_wh, contract.wh_per_interval, contract.deposit_uk) == (2_000, 500, 1_000_000)
    assert (contract.v_min_dv, contract.v_max_dv, contract.tolerance_bp) == (2_070, 2_530, 500)
    assert account_balance(contract.escrow_account_id) == 1_000_000
    assert wallet_uk(market.users["danny"]) == 4 * K
    assert decisions(market.meters["danny"]) == [("connect", "contract_deposit_paid")]
    sent = memory.on_topic(decision_topic("mkt", "mkt-danny"))
    assert [message.json()["reason"] for message in sent] == ["contract_deposit_paid"]
    assert ledger_problems() == []


def test_without_coins_the_contract_awaits_its_deposit_and_connects_once_paid(market):
    contract = offer(market, limits_make(market))
    assert contract.status == ContractStatus.AWAITING_DEPOSIT
    assert account_balance(contract.escrow_account_id) == 0
    assert decisions(market.meters["danny"]) == []

    with pytest.raises(MarketError, match="cannot pay the deposit"):
        deposit_pay(market.users["danny"], contract.pk, NOW)
    coins_give(market.users["danny"], 1 * K)
    with pytest.raises(MarketError, match="no such contract"):
        deposit_pay(market.users["carlos"], contract.pk, NOW)  # not the buyer
    paid = deposit_pay(market.users["danny"], contract.pk, NOW + timedelta(minutes=5))

    assert paid.status == ContractStatus.ACTIVE
    assert wallet_uk(market.users["danny"]) == 0
    assert decisions(market.meters["danny"]) == [("connect", "contract_deposit_paid")]
    with pytest.raises(MarketError, match="no deposit is due"):
        deposit_pay(market.users["danny"], contract.pk, NOW)


def test_an_offer_outside_the_limits_is_refused_naming_each_limit_and_writes_nothing(market):
    coins_give(market.users["danny"], 5 * K)
    limit = limits_make(market)
    escrows = Account.objects.filter(kind="market_escrow")
    with pytest.raises(OfferRefused) as refused:
        offer(market, limit, price_uk_per_kwh=950_000, deposit_uk=3_000_000)
    assert set(refused.value.violations) == {PRICE_HIGH, DEPOSIT_HIGH}
    assert "above the buyer's maximum" in str(refused.value)
    assert Contract.objects.count() == 0 and not escrows.exists()
    assert wallet_uk(market.users["danny"]) == 5 * K


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(deposit_uk=399_999), "at least one interval"),  # one interval is 400,000 µk
        (dict(wh_per_interval=0), "wh_per_interval"),
        (dict(price_uk_per_kwh=-5), "price_uk_per_kwh"),
        (dict(delivery_start=hours(0)), "future"),
        (dict(delivery_end=hours(5) + timedelta(minutes=1)), "boundaries"),
        (dict(v_min_dv=2_600, v_max_dv=2_500), "voltage band"),
    ],
)
def test_bad_offers_are_refused_and_change_nothing(market, changes, message):
    limit = limits_make(market)
    with pytest.raises(MarketError, match=message):
        offer(market, limit, **changes)
    assert Contract.objects.count() == 0


def test_one_open_contract_per_limits_and_none_to_oneself(market):
    coins_give(market.users["danny"], 5 * K)
    limit = limits_make(market)
    offer(market, limit)
    with pytest.raises(MarketError, match="already has an open contract"):
        offer(market, limit)
    with pytest.raises(MarketError, match="no such active limits"):
        bilateral_offer(market.users["danny"], market.meters["danny"], 12345, price_uk_per_kwh=1, wh_per_interval=1,
                        delivery_start=hours(1), delivery_end=hours(2), deposit_uk=1, now=NOW)  # fmt: skip
    limits_withdraw(market.users["danny"], limit.pk, NOW)
    with pytest.raises(MarketError, match="no such active limits"):
        offer(market, limit)
    assert Contract.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(period_start=hours(1) + timedelta(minutes=1)), "boundaries"),
        (dict(period_end=hours(1)), "end after"),
        (dict(period_start=hours(-30), period_end=hours(0)), "future"),
        (dict(min_payment_uk=1_000_000), "minimum payment"),
        (dict(max_price_uk_per_kwh=0), "max_price"),
        (dict(max_deposit_uk=-1), "max_deposit"),
        (dict(v_min_dv=2_530, v_max_dv=2_070), "voltage band"),
        (dict(tolerance_bp=10_001), "tolerance_bp"),
        (dict(max_payment_uk="lots"), "whole number"),
    ],
)
def test_bad_limits_are_refused_and_change_nothing(market, changes, message):
    with pytest.raises(MarketError, match=message):
        limits_make(market, **changes)
    assert BuyerLimit.objects.count() == 0


def test_limits_need_ones_own_consuming_meter_and_only_one_set_per_meter(market):
    with pytest.raises(MarketError, match="producer"):
        limits_publish(
            market.users["angel"], market.meters["angel"], period_start=hours(1), period_end=hours(2),
            max_price_uk_per_kwh=1, min_payment_uk=0, max_payment_uk=1, max_deposit_uk=0, now=NOW,
        )  # fmt: skip
    limits_make(market)
    with pytest.raises(MarketError, match="already has active limits"):
        limits_make(market)
    with pytest.raises(MarketError, match="no such limits"):
        limits_withdraw(market.users["carlos"], BuyerLimit.objects.get().pk, NOW)
    assert BuyerLimit.objects.count() == 1


def test_each_interval_the_buyer_refills_the_escrow(market):
    coins_give(market.users["danny"], 5 * K)
    contract = offer(market, limits_make(market))
    paid_uk = play_interval(contract, hours(1), 500)  # 0.4 k to Bennie's meter from the escrow
    assert account_balance(contract.escrow_account_id) == 600_000
    assert Delivery.objects.get().payment == PaymentState.DUE

    assert contracts_review(market.grid, hours(2) + timedelta(minutes=11)) == 1

    assert Delivery.objects.get().payment == PaymentState.PAID
    assert account_balance(contract.escrow_account_id) == 1_000_000
    assert wallet_uk(market.users["danny"]) == 4 * K - paid_uk
    assert account_balance(market.meters["bennie"].account_id) == paid_uk
    contract.refresh_from_db()
    assert (contract.status, contract.delivered_wh, contract.paid_uk) == (ContractStatus.ACTIVE, 500, 400_000)
    # Reviewing again changes nothing.
    contracts_review(market.grid, hours(2) + timedelta(minutes=12))
    assert wallet_uk(market.users["danny"]) == 4 * K - paid_uk
    assert ledger_problems() == []


def test_a_missed_payment_switches_the_buyer_off_and_returns_what_the_escrow_holds(
    market, memory, django_capture_on_commit_callbacks
):
    coins_give(market.users["danny"], 1 * K)  # exactly the deposit: nothing left to pay with
    contract = offer(market, limits_make(market))
    play_interval(contract, hours(1), 500)

    with django_capture_on_commit_callbacks(execute=True):
        contracts_review(market.grid, hours(2) + timedelta(minutes=11))

    contract.refresh_from_db()
    assert contract.status == ContractStatus.PAYMENT_MISSED
    assert contract.ended_at == hours(2) + timedelta(minutes=11)
    assert Delivery.objects.get().payment == PaymentState.MISSED
    assert decisions(market.meters["danny"]) == [
        ("connect", "contract_deposit_paid"),
        ("disconnect", "contract_payment_missed"),
    ]
    assert memory.on_topic(decision_topic("mkt", "mkt-danny"))[-1].json()["state"] == "disconnect"
    # The deposit paid for the interval; the rest came back.
    assert account_balance(contract.escrow_account_id) == 0
    assert wallet_uk(market.users["danny"]) == 600_000
    assert ledger_problems() == []


def test_an_operator_hold_is_not_overridden_by_the_market(market):
    meter_force_state(market.meters["danny"], "disconnect", "meter inspection", "op", NOW)
    coins_give(market.users["danny"], 5 * K)
    contract = offer(market, limits_make(market))
    assert contract.status == ContractStatus.ACTIVE
    assert decisions(market.meters["danny"]) == [("disconnect", "operator")]


def test_a_breach_stops_the_payments_and_is_recorded(market):
    coins_give(market.users["danny"], 5 * K)
    contract = offer(market, limits_make(market))
    play_interval(contract, hours(1), 500)
    play_interval(contract, hours(2), 300, breach="shortfall")  # the seller under-delivered

    contract.refresh_from_db()
    assert (contract.status, contract.breach, contract.breach_interval) == (
        ContractStatus.BREACHED, "shortfall", hours(2),
    )  # fmt: skip
    assert "seller's meter measured 300 Wh out" in contract.breach_detail
    breached = Delivery.objects.get(interval_start=hours(2))
    assert (breached.breach, breached.delivered_wh, breached.amount_uk) == ("shortfall", 0, 0)

    contracts_review(market.grid, hours(3) + timedelta(minutes=11))

    # The interval before the breach was covered by the deposit; the buyer pays nothing more.
    assert Delivery.objects.get(interval_start=hours(1)).payment == PaymentState.FROM_DEPOSIT
    assert account_balance(contract.escrow_account_id) == 0
    assert wallet_uk(market.users["danny"]) == 5 * K - 400_000
    assert ledger_problems() == []


def test_a_contract_completes_when_its_window_is_settled_and_returns_the_deposit(market):
    coins_give(market.users["danny"], 5 * K)
    contract = offer(market, limits_make(market))
    for interval in range(1, 5):
        play_interval(contract, hours(interval), 500)
        settled_through(market, hours(interval + 1))
        contracts_review(market.grid, hours(interval + 1) + timedelta(minutes=11))

    contract.refresh_from_db()
    assert (contract.status, contract.delivered_wh, contract.paid_uk) == (ContractStatus.COMPLETED, 2_000, 1_600_000)
    assert list(Delivery.objects.order_by("interval_start").values_list("payment", flat=True)) == [
        PaymentState.PAID, PaymentState.PAID, PaymentState.PAID, PaymentState.FROM_DEPOSIT,
    ]  # fmt: skip
    assert account_balance(contract.escrow_account_id) == 0
    assert wallet_uk(market.users["danny"]) == 5 * K - 1_600_000
    assert account_balance(market.meters["bennie"].account_id) == 1_600_000
    assert ledger_problems() == []


def test_a_contract_whose_deposit_never_came_is_cancelled_when_its_window_ends(market):
    contract = offer(market, limits_make(market))
    settled_through(market, hours(5))
    contracts_review(market.grid, hours(5) + timedelta(minutes=11))
    contract.refresh_from_db()
    assert contract.status == ContractStatus.CANCELLED
