"""The demo's market hook, played through real settlements: the auctioned
offer is delivered, and the bilateral contract runs until its seller
under-delivers, then breaches."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.demo import market_demo_seed
from marketplace.models import BidStatus, ContractStatus, OfferStatus, PaymentState
from marketplace.services import market_tick
from marketplace.tests.helpers import NOW, hours, market_make
from meters.tests.factories import reading_make
from settlement.services import settlement_close
from utility.ledger.selectors import ledger_problems


@pytest.mark.django_db
def test_the_market_demo_auctions_delivers_and_breaches(settings):
    settings.MQTT_PUBLISHER = "memory"
    market = market_make("demo-mkt")
    demo = market_demo_seed(market.grid, NOW)
    assert market_demo_seed(market.grid, NOW) == demo  # once per grid

    # 00:10 now: the first late-morning boundary two intervals ahead is 09:00.
    assert (demo.offer.delivery_start, demo.contract.delivery_start, demo.contract.delivery_end) == (
        hours(9), hours(9), hours(19),
    )  # fmt: skip
    assert demo.contract.status == ContractStatus.ACTIVE  # inside Danny's limits, deposit paid

    for n in range(0, 20):
        sunny = 9 <= n < 15  # Bennie's roof: enough for the contract until 15:00, then nothing
        reading_make(market.meters["angel"], hours(n), export_wh=3_000 if 6 <= n < 18 else 0)
        reading_make(market.meters["bennie"], hours(n), export_wh=1_000 if sunny else 0)
        reading_make(market.meters["carlos"], hours(n), import_wh=1_200)
        reading_make(market.meters["danny"], hours(n), import_wh=800)
        settlement_close(market.grid.pk, hours(n), hours(n + 1) + timedelta(minutes=10))
        market_tick(hours(n + 1) + timedelta(minutes=10))

    demo.offer.refresh_from_db()
    auction = demo.offer.contract
    assert demo.offer.status == OfferStatus.SOLD
    assert demo.offer.bids.get(status=BidStatus.WON).bidder == market.users["carlos"]
    assert (auction.status, auction.delivered_wh, auction.price_uk_per_kwh) == (
        ContractStatus.COMPLETED,
        2_000,
        750_000,
    )

    contract = demo.contract
    contract.refresh_from_db()
    assert (contract.status, contract.breach, contract.breach_interval) == (
        ContractStatus.BREACHED, "shortfall", hours(15),
    )  # fmt: skip
    paid = contract.deliveries.filter(payment=PaymentState.PAID).count()
    assert paid + contract.deliveries.filter(payment=PaymentState.FROM_DEPOSIT).count() == 6  # 09:00–14:00
    assert contract.delivered_wh == 6 * 300
    assert ledger_problems() == []
