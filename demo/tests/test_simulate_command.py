"""``manage.py simulate`` and ``demo.fleet`` without a broker: which meters
it speaks for, with what curve and from where, and what it refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from demo.clock import demo_clock_stop
from demo.fleet import grid_fleet, grid_fleet_specs, grid_fleet_stale
from firmware.drivers import ManualClock
from firmware.sim.plan import MeterSpec
from firmware.transport_memory import MemoryBroker, MemoryTransport
from meters.models import Meter
from meters.tests.factories import T0, grid_make, meter_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def grid():
    grid = grid_make("simgrid")
    yield grid
    demo_clock_stop()


def test_each_meter_gets_its_secret_and_a_curve_by_its_kind(grid):
    issued = [
        meter_issue(grid, "M-HOUSE", "consumer"),
        meter_issue(grid, "M-ROOF", "producer"),
        meter_issue(grid, "SL-LAMP", "consumer", public=True),
        meter_issue(grid, "B-STORE", "prosumer"),
    ]
    specs = grid_fleet_specs(grid)
    assert specs == [
        MeterSpec("M-HOUSE", issued[0].secret, "household"),
        MeterSpec("M-ROOF", issued[1].secret, "solar"),
        MeterSpec("SL-LAMP", issued[2].secret, "light"),
        MeterSpec("B-STORE", issued[3].secret, "battery"),
    ]
    assert [spec.meter for spec in grid_fleet_specs(grid, limit=2)] == ["M-HOUSE", "M-ROOF"]


def test_inactive_meters_are_left_out(grid):
    meter_issue(grid, "M-ON", "consumer")
    off = meter_issue(grid, "M-OFF", "consumer").meter
    off.active = False
    off.save(update_fields=["active"])
    assert [spec.meter for spec in grid_fleet_specs(grid)] == ["M-ON"]


def test_a_meter_with_readings_resumes_after_them(grid):
    meter = meter_issue(grid, "M-OLD", "consumer").meter
    # Where the ingest leaves a meter after two accepted readings.
    Meter.objects.filter(pk=meter.pk).update(
        last_seq=2, last_interval_start=T0 + timedelta(hours=1), last_import_total_wh=650, last_export_total_wh=0
    )
    (spec,) = grid_fleet_specs(grid)
    assert (spec.seq, spec.import_total_wh, spec.export_total_wh) == (3, 650, 0)
    assert grid_fleet_stale(grid, T0 + timedelta(minutes=90)) == ["M-OLD"]
    assert grid_fleet_stale(grid, T0 + timedelta(hours=2)) == []


def test_the_fleet_of_a_grid_runs_on_any_transport(grid):
    meter_issue(grid, "M-HOUSE", "consumer")
    meter_issue(grid, "M-ROOF", "producer")
    broker = MemoryBroker()
    clock = ManualClock(int(T0.timestamp()))
    fleet = grid_fleet(grid, clock, transports=lambda spec: MemoryTransport(broker))
    fleet.step()
    clock.advance(3600)
    fleet.step()
    readings = [topic for topic, _payload, _retain in broker.published if topic.endswith("/readings")]
    assert sorted(readings) == ["grid/simgrid/meters/M-HOUSE/readings", "grid/simgrid/meters/M-ROOF/readings"]


def test_the_command_refuses_what_it_cannot_run(grid):
    with pytest.raises(CommandError, match="no grid"):
        call_command("simulate", "--grid", "nowhere")
    with pytest.raises(CommandError, match="no active meters"):
        call_command("simulate", "--grid", grid.slug, "--hours", "1")
    meter_issue(grid, "M-1", "consumer")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("simulate", "--grid", grid.slug, "--meters", "0")
    with pytest.raises(CommandError, match="UTC offset"):
        call_command("simulate", "--grid", grid.slug, "--start", "2026-01-01T00:00:00")
    with pytest.raises(CommandError, match="not in the fleet"):
        call_command("simulate", "--grid", grid.slug, "--faults", "jump:M-NOBODY@1h")
