"""Reads for grids and meters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .credentials import secret_unseal
from .models import Grid, Meter


def grid_get(slug: str) -> Grid:
    """The grid called ``slug``; raises ``Grid.DoesNotExist``."""
    return Grid.objects.select_related("pool_account", "fee_account").get(slug=slug)


def meter_get(public_id: str) -> Meter:
    return Meter.objects.select_related("grid", "account").get(public_id=public_id)


@dataclass(frozen=True, slots=True)
class MeterCredentials:
    """A meter as a simulator that speaks for it needs it: its plain secret,
    and where the ingest left it (last accepted seq and register totals, Wh)."""

    public_id: str
    kind: str
    public: bool
    secret: str
    last_seq: int | None
    last_interval_start: datetime | None
    last_import_total_wh: int | None
    last_export_total_wh: int | None


def grid_meters_credentials(grid: Grid, limit: int | None = None) -> list[MeterCredentials]:
    """The first ``limit`` (all when None) active meters of ``grid`` in
    registration order, with their secrets unsealed. For the demo's simulated
    fleet only: never hand these to a browser or an API."""
    meters = grid.meters.filter(active=True).order_by("pk")
    if limit is not None:
        meters = meters[:limit]
    return [
        MeterCredentials(
            public_id=meter.public_id,
            kind=meter.kind,
            public=meter.public,
            secret=secret_unseal(meter.secret_sealed, meter.public_id),
            last_seq=meter.last_seq,
            last_interval_start=meter.last_interval_start,
            last_import_total_wh=meter.last_import_total_wh,
            last_export_total_wh=meter.last_export_total_wh,
        )
        for meter in meters
    ]
