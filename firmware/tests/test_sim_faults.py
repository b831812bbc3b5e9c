"""Faults in the simulated fleet do what they say: an outage that is caught
up, garbage that the backend refuses, an import that jumps."""

import json

import pytest

from firmware.sim.faults import Fault, duration_parse, fault_parse
from firmware.sim.profiles import energy_ws

from .conftest import T0
from .test_sim_fleet import HOUR, Rig, utc

DAY = [utc(T0 + hour * HOUR) for hour in range(24)]


def test_an_offline_meter_queues_for_hours_then_catches_up_exactly_once():
    rig = Rig(faults=[fault_parse("offline:M-H001@2h+5h")])
    sim = next(sim for sim in rig.fleet.meters if sim.spec.meter == "M-H001")
    rig.run(7 * HOUR - 300)  # the last sweep before the outage ends
    assert not sim.meter.online
    # 01:00 closed at 02:00 sharp, when the network went: it and the four
    # after it wait in the meter's queue.
    assert len(sim.meter.backlog) == 5
    assert rig.backend.periods("M-H001") == DAY[:1]
    assert rig.published("M-H001", "status")[-1] == b"offline"  # its will
    assert any("online 17/18" in line for line in rig.lines)
    rig.run(17 * HOUR + 300)
    assert sim.meter.online and len(sim.meter.backlog) == 0
    assert rig.backend.periods("M-H001") == DAY
    assert set(rig.backend.deliveries.values()) == {1}
    assert rig.backend.problems == []
    assert rig.published("M-H001", "status")[-1] == b"online"
    assert sim.transport.outages == 1


def test_a_garbage_meter_sends_bad_json_and_bad_signatures_that_are_rejected():
    rig = Rig(faults=[fault_parse("garbage:M-H002@1h")])
    rig.run(24 * HOUR)
    # An interval closes at 01:00, 02:00, ... 24:00: 24 of each kind.
    assert rig.backend.rejected == {("M-H002", "bad_json"): 24, ("M-H002", "bad_signature"): 24}
    assert rig.fleet.stats().garbage == 48
    # Its real readings all went through, and the rejections held none of them.
    assert rig.backend.periods("M-H002") == DAY
    sim = next(sim for sim in rig.fleet.meters if sim.spec.meter == "M-H002")
    assert (len(sim.meter.backlog), sim.meter.state["dead"], sim.meter.counters["held"]) == (0, 0, 0)
    payloads = rig.published("M-H002", "readings")
    forged = [json.loads(p) for p in payloads if p.endswith(b"}") and json.loads(p)["seq"] == 0]
    assert len(forged) == 24


def test_a_jumped_meter_reports_ten_times_its_import_and_the_grid_goes_short():
    rig = Rig(faults=[fault_parse("jump:M-H003@12h*10")])
    rig.run(24 * HOUR)
    sim = next(sim for sim in rig.fleet.meters if sim.spec.meter == "M-H003")
    physical = sim.curve.inner
    for body in rig.backend.accepted["M-H003"]:
        start = T0 + DAY.index(body["period_start"]) * HOUR
        real_wh = energy_ws(physical, start, start + HOUR)[0] // 3600
        factor = 10 if start >= T0 + 12 * HOUR else 1
        assert abs(body["import_wh"] - factor * real_wh) <= factor, body["period_start"]
    totals = rig.backend.interval_totals()
    for period, (import_wh, export_wh) in totals.items():
        if period < utc(T0 + 12 * HOUR):
            assert abs(export_wh - import_wh * 110 // 100) <= 5, period
        else:
            # The grid delivered what the meter really used; it claims more:
            # import above export, settlement's loss alert.
            assert import_wh > export_wh, period


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("45m", 2700), ("3h", 10800), ("2d", 172800), ("1h30m", 5400), ("600", 600)]
)
def test_durations(text, seconds):
    assert duration_parse(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "3x", "1.5h", "-1h", "3h "])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        duration_parse(text)


def test_faults_parse():
    assert fault_parse("offline:M-H001@2h+5h") == Fault("offline", "M-H001", 7200, 18000)
    assert fault_parse("garbage:M-H002") == Fault("garbage", "M-H002", 0, None)
    assert fault_parse("garbage:M-H002@1h+2h") == Fault("garbage", "M-H002", 3600, 7200)
    assert fault_parse("jump:SL_1@30m*4") == Fault("jump", "SL_1", 1800, None, 4)
    assert fault_parse("jump:M-1@1h").factor == 10


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("flood:M-1", "unknown fault"),
        ("offline:M-1@2h", "needs a length"),
        ("garbage:M-1*3", "only a jump"),
        ("jump:M-1*0", "≥ 1"),
        ("offline", "not a fault"),
        ("offline:M/1@1h+1h", "not a fault"),
    ],
)
def test_bad_faults_say_why(text, why):
    with pytest.raises(ValueError, match=why):
        fault_parse(text)


def test_a_fault_is_active_in_its_window_only():
    fault = Fault("offline", "M-1", 100, 50)
    assert [fault.active(s) for s in (99, 100, 149, 150)] == [False, True, True, False]
    assert Fault("garbage", "M-1", 10).active(10**9)
