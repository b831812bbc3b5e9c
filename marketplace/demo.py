"""The market in the demo: an auctioned offer and a bilateral contract.

``market_demo_seed(grid, now)`` sets both up on a grid whose meters have
owners (the demo's Angel and Bennie produce, Carlos and Danny consume):

* Angel auctions 1 kWh (per hour of interval) for two daylight intervals;
  Danny bids, Carlos outbids him; when the timer ends (the next interval
  boundary) Carlos wins and Angel's meter delivers it.
* Danny publishes buying limits; Bennie offers 300 Wh per hour of interval
  inside them from a late-morning interval until 19:00 UTC: accepted at once,
  deposit paid, Danny's meter told ``connect``. The contract is paid each
  interval while the sun shines; when Bennie's solar output falls short
  of what Danny's meter receives (at the latest at sunset, 18:00 UTC, earlier
  under clouds), dual metering records the breach and Danny stops paying.

The demo moves it along by calling ``market_tick(now)`` after each
settlement (the beat does it every minute in production).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from meters.models import Grid, Meter
from utility.lib.timeutil import ensure_utc, interval_floor
from utility.residents.services import wallet_credit

from .models import BuyerLimit, Contract, Offer
from .services import MarketError, bid_place, bilateral_offer, limits_publish, offer_create

DAYLIGHT_FROM_HOUR = 9  # UTC: the solar curves run 06:00–18:00
DAYLIGHT_UNTIL_HOUR = 14
CONTRACT_UNTIL_HOUR = 19  # past sunset: the seller cannot keep delivering
BUYER_COINS_UK = 50_000_000


@dataclass(frozen=True, slots=True)
class MarketDemo:
    offer: Offer
    contract: Contract


def _daylight_start(grid: Grid, now: datetime) -> datetime:
    """The first interval boundary at least two intervals ahead whose hour
    is in the late morning (UTC): the auction ends first, and the bilateral
    contract gets a few sunny intervals before the sun sets."""
    step = timedelta(seconds=grid.interval_s)
    start = interval_floor(now, grid.interval_s) + 2 * step
    while not DAYLIGHT_FROM_HOUR <= start.hour < DAYLIGHT_UNTIL_HOUR:
        start += step
    return start


def _owned(grid: Grid, kinds: tuple[str, ...]) -> list[Meter]:
    meters = Meter.objects.filter(grid=grid, active=True, kind__in=kinds, owner__isnull=False).select_related("owner")
    return list(meters.order_by("pk")[:2])


def market_demo_seed(grid: Grid, now: datetime) -> MarketDemo:
    """Create the demo's auction and bilateral contract (once per grid; a
    second call returns the first ones). Raises ``ValueError`` when the grid
    lacks two owned producing and two owned consuming meters, or the market
    refuses a step (nothing is written then)."""
    now = ensure_utc(now)
    existing = Offer.objects.filter(grid=grid).order_by("pk").first()
    contract = Contract.objects.filter(grid=grid, kind="bilateral").order_by("pk").first()
    if existing is not None and contract is not None:
        return MarketDemo(existing, contract)
    sellers, buyers = _owned(grid, ("producer", "prosumer")), _owned(grid, ("consumer",))
    if len(sellers) < 2 or len(buyers) < 2:
        raise ValueError(f"grid {grid.slug} needs two owned producers and two owned consumers for the market demo")
    start = _daylight_start(grid, now)
    try:
        with transaction.atomic():
            for buyer in buyers:
                wallet_credit(buyer.owner.get_username(), BUYER_COINS_UK, "market demo coins", "demo",
                              f"market-demo:{grid.slug}:{buyer.owner.pk}", now)  # fmt: skip
            offer = existing or _auction(grid, sellers[0], buyers, start, now)
            contract = contract or _bilateral(grid, sellers[1], buyers[1], start, now)
    except MarketError as exc:  # e.g. a seller's meter was switched off: the demo goes on without a market
        raise ValueError(f"market demo not seeded on {grid.slug}: {exc}") from exc
    return MarketDemo(offer, contract)


def _per_interval(grid: Grid, wh_per_hour: int) -> int:
    return max(1, wh_per_hour * grid.interval_s // 3600)


def _auction(grid: Grid, seller: Meter, buyers: list[Meter], start: datetime, now: datetime) -> Offer:
    step = timedelta(seconds=grid.interval_s)
    offer = offer_create(
        seller.owner, seller, energy_wh=2 * _per_interval(grid, 1_000), delivery_start=start,
        delivery_end=start + 2 * step, start_price_uk_per_kwh=600_000,
        ends_at=interval_floor(now, grid.interval_s) + step, now=now,
    )  # fmt: skip
    second, first = buyers[1], buyers[0]
    bid_place(second.owner, offer.pk, second, 650_000, now)
    bid_place(first.owner, offer.pk, first, 750_000, now)
    return offer


def _bilateral(grid: Grid, seller: Meter, buyer: Meter, start: datetime, now: datetime) -> Contract:
    end = start.replace(hour=CONTRACT_UNTIL_HOUR, minute=0, second=0)
    existing = BuyerLimit.objects.filter(buyer_meter=buyer, active=True).first()
    limit = existing or limits_publish(
        buyer.owner, buyer, period_start=interval_floor(now, grid.interval_s) + timedelta(seconds=grid.interval_s),
        period_end=end + timedelta(days=1), max_price_uk_per_kwh=950_000, min_payment_uk=0,
        max_payment_uk=2_000_000, max_deposit_uk=5_000_000, now=now,
    )  # fmt: skip
    wh = _per_interval(grid, 300)
    payment_uk = (2 * wh * 900_000 + 1000) // 2000
    return bilateral_offer(
        seller.owner, seller, limit.pk, price_uk_per_kwh=900_000, wh_per_interval=wh, delivery_start=start,
        delivery_end=end, deposit_uk=2 * payment_uk, now=now,
    )  # fmt: skip
