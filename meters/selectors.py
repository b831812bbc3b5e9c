"""Reads for grids and meters."""

from __future__ import annotations

from .models import Grid, Meter


def grid_get(slug: str) -> Grid:
    """The grid called ``slug``; raises ``Grid.DoesNotExist``."""
    return Grid.objects.select_related("pool_account", "fee_account").get(slug=slug)


def meter_get(public_id: str) -> Meter:
    return Meter.objects.select_related("grid", "account").get(public_id=public_id)
