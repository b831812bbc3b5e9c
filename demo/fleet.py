"""The demo grid's simulated fleet: the registered meters, spoken for by the
real firmware (``firmware.sim``) over MQTT.

``grid_fleet`` builds the fleet for a grid from the database: each active
meter with its unsealed secret, a curve by its kind (producer → solar roof,
prosumer → battery, public consumer → street light, consumer → household), and
resumed where the ingest left it (next seq, register totals), so a fleet
started against a grid that already has readings carries on instead of being
refused as stale. ``demo`` is the only app that imports ``firmware``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from django.conf import settings

from firmware.sim.cli import paho_transports
from firmware.sim.faults import Fault
from firmware.sim.fleet import Fleet
from firmware.sim.plan import MeterSpec, profile_for
from firmware.sim.profiles import Weather
from meters.models import Grid
from meters.selectors import MeterCredentials, grid_meters_credentials


def grid_fleet_specs(grid: Grid, limit: int | None = None) -> list[MeterSpec]:
    """One ``MeterSpec`` per active meter of ``grid`` (the first ``limit``)."""
    return [_spec(meter) for meter in grid_meters_credentials(grid, limit)]


def _spec(meter: MeterCredentials) -> MeterSpec:
    return MeterSpec(
        meter=meter.public_id,
        secret=meter.secret,
        profile=profile_for(meter.kind, meter.public),
        seq=(meter.last_seq or 0) + 1,
        import_total_wh=meter.last_import_total_wh or 0,
        export_total_wh=meter.last_export_total_wh or 0,
    )


def grid_fleet_stale(grid: Grid, start: datetime, limit: int | None = None) -> list[str]:
    """Meters whose last stored reading is not before the interval containing
    ``start``: their first simulated readings would be refused as stale."""
    floor_s = int(start.timestamp()) // grid.interval_s * grid.interval_s
    return [
        meter.public_id
        for meter in grid_meters_credentials(grid, limit)
        if meter.last_interval_start is not None and meter.last_interval_start.timestamp() >= floor_s
    ]


def grid_fleet(
    grid: Grid,
    clock,
    *,
    limit: int | None = None,
    faults: Iterable[Fault] = (),
    transports: Callable[[MeterSpec], object] | None = None,
    journals: Callable[[MeterSpec], object] | None = None,
    weather: Weather | None = None,
    progress: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    meter_config: dict | None = None,
) -> Fleet:
    """The fleet of ``grid`` on ``clock`` (a ``SimClock``: ``DemoClock.sim``
    in the demo), talking to ``settings.MQTT_URL`` unless ``transports`` says
    otherwise (each meter logs in with its own id and secret); ``meter_config``
    overrides the firmware's defaults (e.g. ``ack_timeout_s``). Run it with
    ``fleet.run(stop_event)`` in a thread of its own."""
    return Fleet(
        grid.slug,
        grid_fleet_specs(grid, limit),
        clock,
        transports or paho_transports(settings.MQTT_URL),
        interval_s=grid.interval_s,
        faults=faults,
        weather=weather,
        journal_factory=journals,
        progress=progress,
        log=log,
        meter_config=meter_config,
    )
