"""The beat's market task: ids in (none), one service call, safe to repeat."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from marketplace.models import Contract, OfferStatus
from marketplace.services import bid_place, offer_create
from marketplace.tasks import market_tick
from utility import clock

from .helpers import NOW, K, coins_give, hours, market_make


@pytest.fixture
def market(db):
    yield market_make("task")
    clock.clock_reset()


def test_the_beat_runs_the_market_every_minute():
    entry = django_settings.CELERY_BEAT_SCHEDULE["market-tick"]
    assert (entry["task"], entry["schedule"]) == ("marketplace.tasks.market_tick", 60.0)


def test_the_task_closes_due_auctions_and_publishes_the_price_once(market, memory):
    coins_give(market.users["carlos"], 5 * K)
    offer = offer_create(market.users["angel"], market.meters["angel"], energy_wh=1_000, delivery_start=hours(2),
                         delivery_end=hours(3), start_price_uk_per_kwh=500_000, ends_at=hours(1), now=NOW)  # fmt: skip
    bid_place(market.users["carlos"], offer.pk, market.meters["carlos"], 500_000, NOW)
    clock.clock_install(lambda: hours(1))

    assert market_tick.delay().get() == {"auctions_closed": 1, "contracts_acted_on": 0, "prices_live": 1}
    assert market_tick.delay().get() == {"auctions_closed": 0, "contracts_acted_on": 0, "prices_live": 1}

    offer.refresh_from_db()
    assert offer.status == OfferStatus.SOLD and Contract.objects.count() == 1
    assert len(memory.on_topic("grid/task/price")) == 1
