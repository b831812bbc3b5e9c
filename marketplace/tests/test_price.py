"""The live price on ``grid/<grid>/price``: once per interval, retained,
stored as the grid's history, and sent again after a broker outage."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.models import PricePoint
from marketplace.selectors import price_history
from marketplace.services import auction_close, bid_place, market_price_publish, market_tick, offer_create
from marketplace.services import price as price_module
from meters.mqtt import MqttPublishError

from .helpers import NOW, K, coins_give, hours, market_make


@pytest.fixture
def market(db):
    return market_make()


def test_the_price_goes_out_retained_once_per_interval(market, memory):
    point = market_price_publish(market.grid, NOW)

    assert point.published and point.interval_start == hours(0)
    (message,) = memory.on_topic("grid/mkt/price")
    assert message.retain and message.qos == 1
    assert message.json() == {
        "grid": "mkt",
        "tariff_uk_per_kwh": 1_000_000,
        "interval_s": 3600,
        "interval_start": "2026-01-01T00:00:00Z",
        "issued_at": "2026-01-01T00:10:00Z",
        "market_uk_per_kwh": None,
        "market_wh": 0,
        "open_offers": 0,
    }
    market_price_publish(market.grid, NOW + timedelta(minutes=30))
    assert len(memory.on_topic("grid/mkt/price")) == 1  # the same interval: nothing new
    market_price_publish(market.grid, hours(1))
    assert [m.json()["interval_start"] for m in memory.on_topic("grid/mkt/price")][-1] == "2026-01-01T01:00:00Z"
    assert [p.interval_start for p in price_history(market.grid)] == [hours(0), hours(1)]


def test_the_market_price_is_that_of_the_contracts_delivering_now(market, memory):
    coins_give(market.users["carlos"], 10 * K)
    offer = offer_create(market.users["angel"], market.meters["angel"], energy_wh=1_500, delivery_start=hours(1),
                         delivery_end=hours(2), start_price_uk_per_kwh=700_000, ends_at=hours(1), now=NOW)  # fmt: skip
    assert market_price_publish(market.grid, NOW).payload["open_offers"] == 1
    bid_place(market.users["carlos"], offer.pk, market.meters["carlos"], 750_000, NOW)
    auction_close(offer.pk, hours(1))

    point = market_price_publish(market.grid, hours(1) + timedelta(seconds=5))

    assert (point.market_uk_per_kwh, point.market_wh, point.tariff_uk_per_kwh) == (750_000, 1_500, 1_000_000)
    assert memory.on_topic("grid/mkt/price")[-1].json()["market_uk_per_kwh"] == 750_000


def test_a_broker_outage_keeps_the_price_and_the_next_tick_sends_it(market, memory, monkeypatch):
    def down(*args, **kwargs):
        raise MqttPublishError("broker down")

    monkeypatch.setattr(price_module, "mqtt_publish", down)
    point = market_price_publish(market.grid, NOW)
    assert point.published is False and PricePoint.objects.get().published is False

    monkeypatch.undo()
    assert market_tick(NOW + timedelta(minutes=1)).prices_live == 1
    assert PricePoint.objects.get().published is True
    assert len(memory.on_topic("grid/mkt/price")) == 1
