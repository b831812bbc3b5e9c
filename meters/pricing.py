"""The coin price a resident buys and withdraws at: their grid's rules.

Plugged into the payments app by ``settings.PAYMENTS_PRICE_SOURCE`` (the core
app does not import this one)."""

from __future__ import annotations

from utility.payments.pricing import CoinPrice

from .models import Grid


def coin_price_for(user) -> CoinPrice | None:
    """The grid of the resident's first meter (by id); a resident without a
    meter buys on the only grid, if there is exactly one; else ``None``."""
    grid = Grid.objects.filter(meters__owner=user).order_by("meters__id").first()
    if grid is None:
        grids = list(Grid.objects.all()[:2])
        grid = grids[0] if len(grids) == 1 else None
    if grid is None:
        return None
    return CoinPrice(grid_slug=grid.slug, coin_price_cents=grid.coin_price_cents, currency=grid.currency)
