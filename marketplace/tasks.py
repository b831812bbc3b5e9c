"""Celery tasks of the marketplace: the beat runs ``market_tick`` every minute."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from utility import clock

from .services import market_tick as market_tick_service

RETRY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, ConnectionError, TimeoutError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": 10,
}


@shared_task(**RETRY)
def market_tick() -> dict[str, int]:
    """Close ended auctions, take contract payments, end contracts, publish
    prices (``marketplace.services.market_tick``); safe to run twice."""
    done = market_tick_service(clock.now())
    return {
        "auctions_closed": done.auctions_closed,
        "contracts_acted_on": done.contracts_acted_on,
        "prices_live": done.prices_live,
    }
