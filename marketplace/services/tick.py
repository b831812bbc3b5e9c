"""The market's minute: what the beat runs (``marketplace.tasks.market_tick``)
and what the demo calls after each of its ticks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from meters.models import Grid
from utility.lib.timeutil import ensure_utc

from .auctions import auctions_close_due
from .delivery import contracts_review
from .price import market_price_publish


@dataclass(frozen=True, slots=True)
class MarketTick:
    auctions_closed: int
    contracts_acted_on: int
    prices_live: int  # grids whose price for this interval is out (now or earlier)


def market_tick(now: datetime) -> MarketTick:
    """Close the auctions whose timer ended, review every grid's contracts
    (payments, endings, refunds) and publish each grid's price for the
    interval holding ``now``. Safe to run any number of times."""
    now = ensure_utc(now)
    closed = auctions_close_due(now)
    acted = live = 0
    for grid in Grid.objects.order_by("pk"):
        acted += contracts_review(grid, now)
        live += market_price_publish(grid, now).published
    return MarketTick(closed, acted, live)
