"""The live price: each interval, the pool's tariff and the market's price
per kWh go out retained on ``grid/<grid>/price`` (docs/market.md) and are
kept as the grid's price history.

The payload is ``meters.decisions.price_publish``'s (the same keys, so a
smart load written for it keeps working) plus the market's fields.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction

from meters.decisions import price_topic
from meters.models import Grid
from meters.mqtt import MqttPublishError, mqtt_publish
from utility.lib.timeutil import ensure_utc, format_utc, interval_floor

from ..domain import volume_weighted_price
from ..models import Contract, ContractStatus, Offer, OfferStatus, PricePoint

logger = logging.getLogger(__name__)


def market_quote(grid: Grid, interval_start: datetime) -> tuple[int | None, int]:
    """The market's price now: the volume-weighted price (µk per kWh, rounded
    half up) of the contracts delivering in the interval, weighted by what
    each may cover in it (Wh); None when none delivers. Returns (price, Wh)."""
    rows = Contract.objects.filter(
        grid=grid, status=ContractStatus.ACTIVE, delivery_start__lte=interval_start, delivery_end__gt=interval_start
    ).values_list("price_uk_per_kwh", "wh_per_interval", "energy_wh", "delivered_wh")
    quantities = [(price, max(0, min(per, energy - delivered))) for price, per, energy, delivered in rows]
    return volume_weighted_price(quantities), sum(wh for _, wh in quantities)


def _point_for(grid: Grid, interval_start: datetime, now: datetime) -> PricePoint:
    market_uk, market_wh = market_quote(grid, interval_start)
    payload = {
        "grid": grid.slug,
        "tariff_uk_per_kwh": grid.tariff_uk_per_kwh,
        "interval_s": grid.interval_s,
        "interval_start": format_utc(interval_start),
        "issued_at": format_utc(now),
        "market_uk_per_kwh": market_uk,
        "market_wh": market_wh,
        "open_offers": Offer.objects.filter(grid=grid, status=OfferStatus.OPEN).count(),
    }
    try:
        with transaction.atomic():
            return PricePoint.objects.create(
                grid=grid, interval_start=interval_start, tariff_uk_per_kwh=grid.tariff_uk_per_kwh,
                market_uk_per_kwh=market_uk, market_wh=market_wh, payload=payload, created_at=now,
            )  # fmt: skip
    except IntegrityError:  # another tick made it a moment ago
        return PricePoint.objects.get(grid=grid, interval_start=interval_start)


def market_price_publish(grid: Grid, now: datetime) -> PricePoint:
    """Store and publish (retained, QoS 1) the price of the interval holding
    ``now``, once per interval: the point is stored first, so a broker outage
    leaves it ``published=False`` and the next call publishes it again.
    Returns the point."""
    now = ensure_utc(now)
    grid = Grid.objects.get(pk=grid.pk)
    interval_start = interval_floor(now, grid.interval_s)
    point = PricePoint.objects.filter(grid=grid, interval_start=interval_start).first()
    point = point or _point_for(grid, interval_start, now)
    if point.published:
        return point
    try:
        mqtt_publish(price_topic(grid.slug), point.payload, qos=1, retain=True)
    except MqttPublishError:
        logger.warning("price of %s for %s not published; the next tick retries", grid.slug, interval_start)
        return point
    PricePoint.objects.filter(pk=point.pk).update(published=True)
    point.published = True
    return point
