"""The simulated fleet on the in-memory broker: a day of readings from every
meter, each interval exactly once, totals that add up, and a grid exporting
10 % more than it imports; time that jumps; a real-time clock."""

import hashlib
import hmac
import json
import threading
import time
from collections import Counter

import pytest

from firmware.drivers import ManualClock
from firmware.sim.clock import SimClock
from firmware.sim.fleet import Fleet, MeterSpec
from firmware.sim.profiles import energy_ws
from firmware.transport_memory import MemoryBroker, MemoryTransport

from .conftest import T0

HOUR = 3600


class StandIn:
    """The platform's ingest, reduced to the rules a fleet must satisfy: a
    valid HMAC with the meter's own secret, seq and period moving forward,
    totals that follow the previous reading. Acks like the real one."""

    def __init__(self, broker, secrets):
        self.secrets = secrets
        self.accepted = {}  # meter -> [body, ...] in arrival order
        self.deliveries = Counter()  # (meter, period_start) -> valid copies received
        self.rejected = Counter()  # (meter, reason)
        self.problems = []
        self.transport = MemoryTransport(broker)
        self.transport.set_callback(self._on_reading)
        self.transport.connect("backend")
        self.transport.subscribe("grid/+/meters/+/readings")

    def poll(self):
        self.transport.poll()

    def _on_reading(self, topic, payload):
        meter = topic.split("/")[3]
        try:
            body = json.loads(payload)
        except ValueError:
            return self._ack(topic, None, "rejected", meter, "bad_json")
        canonical = json.dumps(
            {k: v for k, v in body.items() if k != "sig"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        expected = hmac.new(self.secrets[meter].encode(), canonical, hashlib.sha256).hexdigest()
        if body.get("meter") != meter or not hmac.compare_digest(expected, str(body.get("sig"))):
            return self._ack(topic, body.get("seq"), "rejected", meter, "bad_signature")
        key = (meter, body["period_start"])
        self.deliveries[key] += 1
        if self.deliveries[key] > 1:
            return self._ack(topic, body["seq"], "duplicate")
        previous = self.accepted.get(meter, [None])[-1]
        self._check_follows(meter, previous, body)
        self.accepted.setdefault(meter, []).append(body)
        self._ack(topic, body["seq"], "accepted")

    def _check_follows(self, meter, previous, body):
        if previous is None:
            return
        if body["seq"] != previous["seq"] + 1 or body["period_start"] <= previous["period_start"]:
            self.problems.append(f"{meter}: seq {previous['seq']} -> {body['seq']} out of order")
        for direction in ("import", "export"):
            rise = body[f"{direction}_total_wh"] - previous[f"{direction}_total_wh"]
            if rise != body[f"{direction}_wh"]:
                self.problems.append(f"{meter} seq {body['seq']}: {direction} total rose {rise}")

    def _ack(self, topic, seq, status, meter=None, reason=None):
        if reason is not None:
            self.rejected[(meter, reason)] += 1
        ack = json.dumps({"seq": seq, "status": status, "reason": reason}).encode()
        self.transport.publish(topic.rsplit("/", 1)[0] + "/ack", ack)

    def periods(self, meter):
        return [body["period_start"] for body in self.accepted.get(meter, [])]

    def interval_totals(self):
        """{period_start: (import_wh, export_wh)} over every meter."""
        totals = {}
        for bodies in self.accepted.values():
            for body in bodies:
                imp, exp = totals.get(body["period_start"], (0, 0))
                totals[body["period_start"]] = (imp + body["import_wh"], exp + body["export_wh"])
        return totals


def grid_specs(households=12, roofs=3, lights=1, batteries=2):
    specs = [MeterSpec(f"M-H{n:03d}", f"secret-h{n}", "household") for n in range(households)]
    specs += [MeterSpec(f"M-P{n:03d}", f"secret-p{n}", "solar") for n in range(roofs)]
    specs += [MeterSpec(f"SL-{n}", f"secret-l{n}", "light") for n in range(lights)]
    specs += [MeterSpec(f"B-{n}", f"secret-b{n}-ü", "battery") for n in range(batteries)]
    return specs


class Rig:
    """A fleet, its broker and a stand-in backend on a manual clock."""

    def __init__(self, specs=None, clock=None, **options):
        self.specs = specs or grid_specs()
        self.broker = MemoryBroker()
        self.backend = StandIn(self.broker, {spec.meter: spec.secret for spec in self.specs})
        self.clock = clock or ManualClock(T0)
        self.lines = []
        options.setdefault("progress", self.lines.append)
        self.fleet = Fleet(
            "g1",
            self.specs,
            self.clock,
            lambda spec: MemoryTransport(self.broker),
            after_sweep=self.backend.poll,
            **options,
        )

    def run(self, seconds, step_s=300):
        self.fleet.step()
        for _ in range(seconds // step_s):
            self.clock.advance(step_s)
            self.fleet.step()
        self.settle()

    def settle(self):
        for _ in range(3):  # acks of the last sweep, then nothing left to say
            self.fleet.step()

    def published(self, meter, leaf):
        topic = f"grid/g1/meters/{meter}/{leaf}"
        return [payload for name, payload, _retain in self.broker.published if name == topic]


def utc(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def test_a_simulated_day_every_meter_reports_every_interval_exactly_once():
    rig = Rig()
    rig.run(24 * HOUR)
    day = [utc(T0 + hour * HOUR) for hour in range(24)]
    for spec in rig.specs:
        assert rig.backend.periods(spec.meter) == day, spec.meter
    assert set(rig.backend.deliveries.values()) == {1}  # nothing was sent twice
    assert rig.backend.problems == []
    assert rig.backend.rejected == Counter()
    stats = rig.fleet.stats()
    assert stats.closed == stats.sent == stats.acked == 24 * len(rig.specs)
    assert (stats.queued, stats.dropped, stats.dead_letter, stats.rejected) == (0, 0, 0, 0)


def test_totals_are_consistent_with_the_meters_and_the_curves():
    rig = Rig()
    rig.run(24 * HOUR)
    for sim in rig.fleet.meters:
        bodies = rig.backend.accepted[sim.spec.meter]
        assert sum(body["import_wh"] for body in bodies) == bodies[-1]["import_total_wh"] == sim.meter.state["it"]
        assert sum(body["export_wh"] for body in bodies) == bodies[-1]["export_total_wh"] == sim.meter.state["et"]
        # The meter measured its curve exactly: only the sub-Wh rest is left over.
        import_ws, export_ws = energy_ws(sim.curve, T0, T0 + 24 * HOUR)
        assert (import_ws // 3600, export_ws // 3600) == (sim.meter.state["it"], sim.meter.state["et"])


def test_the_grid_exports_ten_percent_more_than_it_imports_every_interval():
    rig = Rig()
    rig.run(24 * HOUR)
    totals = rig.backend.interval_totals()
    assert len(totals) == 24
    for period, (import_wh, export_wh) in totals.items():
        assert abs(export_wh - import_wh * 110 // 100) <= 5, period  # Wh rounding, meter by meter
    day_import = sum(imp for imp, _ in totals.values())
    day_export = sum(exp for _, exp in totals.values())
    assert round(day_export / day_import, 3) == 1.1


def test_a_progress_line_per_interval():
    rig = Rig()
    rig.run(6 * HOUR)
    assert len(rig.lines) == 6
    assert rig.lines[0].startswith("2026-01-01T00:00Z closed 18/18  sent 18  acked 18  queued 0  online 18/18")
    assert all("rejected 0" in line and "kWh" in line for line in rig.lines)


def test_a_clock_that_jumps_hours_still_closes_every_interval_in_order():
    rig = Rig()
    rig.fleet.step()
    rig.clock.advance(5 * HOUR + 1234)  # five boundaries in one jump
    rig.fleet.step()
    rig.settle()
    for sim in rig.fleet.meters:
        bodies = rig.backend.accepted[sim.spec.meter]
        assert [body["period_start"] for body in bodies] == [utc(T0 + hour * HOUR) for hour in range(5)]
        # Each interval's register is exactly the curve's energy up to its end.
        for hour, body in enumerate(bodies):
            import_ws, export_ws = energy_ws(sim.curve, T0, T0 + (hour + 1) * HOUR)
            assert (body["import_total_wh"], body["export_total_wh"]) == (import_ws // 3600, export_ws // 3600)
    assert rig.backend.problems == []


def test_a_meter_resumes_where_the_backend_left_it():
    specs = [MeterSpec("M-OLD", "secret-old", "household", seq=42, import_total_wh=123_456, export_total_wh=7)]
    rig = Rig(specs)
    rig.run(2 * HOUR)
    first, second = rig.backend.accepted["M-OLD"]
    assert (first["seq"], second["seq"]) == (42, 43)
    assert first["import_total_wh"] == 123_456 + first["import_wh"]
    assert first["export_total_wh"] == 7


def test_a_disconnect_decision_cuts_the_household_and_the_batteries_rebalance():
    from firmware.signing import Signer, wire

    rig = Rig()
    rig.run(2 * HOUR)
    house = "M-H004"
    decision = {"state": "disconnect", "reason": "no_funds", "balance_uk": -5, "issued_at": utc(T0), "seq": 1}
    rig.broker.publish(f"grid/g1/meters/{house}/decision", wire(Signer("secret-h4").signed(decision)), True)
    rig.run(3 * HOUR)
    readings = rig.backend.accepted[house]
    assert readings[1]["import_wh"] > 0
    assert [body["import_wh"] for body in readings[3:]] == [0, 0]  # a full interval with the supply cut
    sim = next(sim for sim in rig.fleet.meters if sim.spec.meter == house)
    assert sim.relay.closed is False
    for period, (import_wh, export_wh) in rig.backend.interval_totals().items():
        assert abs(export_wh - import_wh * 110 // 100) <= 5, period
    # A forged "connect" changes nothing; the utility's own does.
    forged = {**decision, "state": "connect", "seq": 2}
    rig.broker.publish(f"grid/g1/meters/{house}/decision", wire(Signer("guess").signed(forged)), True)
    rig.run(HOUR)
    assert sim.relay.closed is False
    rig.broker.publish(f"grid/g1/meters/{house}/decision", wire(Signer("secret-h4").signed(forged)), True)
    rig.run(2 * HOUR)
    assert sim.relay.closed is True
    assert rig.backend.accepted[house][-1]["import_wh"] > 0


def test_the_fleet_runs_on_a_real_time_clock():
    # Real time (speed 1), started 1.5 s before the end of a one-minute interval.
    boundary = (int(time.time()) // 60 + 2) * 60
    clock = SimClock(boundary - 1.5, speed=1)
    rig = Rig(grid_specs(households=3, roofs=1, lights=1, batteries=1), clock=clock, interval_s=60)
    stop = threading.Event()
    runner = threading.Thread(target=rig.fleet.run, args=(stop,), kwargs={"tick_s": 0.05})
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while len(rig.backend.accepted) < len(rig.specs) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    for spec in rig.specs:
        assert rig.backend.periods(spec.meter)[0] == utc(boundary - 60), spec.meter
    # Shut down cleanly: every meter said offline on its way out.
    assert all(rig.published(spec.meter, "status")[-1] == b"offline" for spec in rig.specs)


def test_run_until_stops_after_the_simulated_hours_with_nothing_queued():
    clock = SimClock(T0, speed=36_000)  # an hour every 0.1 s
    rig = Rig(grid_specs(households=4, roofs=1, lights=1, batteries=1), clock=clock)
    stats = rig.fleet.run(until_s=T0 + 3 * HOUR, tick_s=0.01)
    assert stats.queued == 0 and stats.closed >= 3 * len(rig.specs)
    assert stats.acked == stats.closed
    assert len(rig.lines) >= 3


def test_a_fleet_refuses_duplicate_meters_and_faults_on_strangers():
    from firmware.sim.faults import fault_parse

    with pytest.raises(ValueError, match="twice"):
        Rig([MeterSpec("M-1", "a", "household"), MeterSpec("M-1", "b", "solar")])
    with pytest.raises(ValueError, match="not in the fleet"):
        Rig(faults=[fault_parse("offline:M-NOBODY@1h+1h")])
    with pytest.raises(ValueError, match="profile"):
        MeterSpec("M-1", "a", "windmill")
    with pytest.raises(ValueError, match="seq"):
        MeterSpec("M-1", "a", "household", seq=0)


def test_a_fleet_begins_where_its_clock_began_however_late_its_first_step():
    clock = SimClock(T0, speed=36_000)  # ten simulated hours a real second
    rig = Rig(grid_specs(households=2, roofs=1, lights=0, batteries=1), clock=clock)
    time.sleep(0.2)  # two simulated hours pass before the first step
    rig.fleet.step()
    rig.settle()
    assert rig.fleet.start_s == T0
    for spec in rig.specs:
        assert rig.backend.periods(spec.meter)[:2] == [utc(T0), utc(T0 + HOUR)]


def test_an_accelerated_clock_does_not_resend_readings_before_their_ack_can_come():
    clock = SimClock(T0, speed=36_000)  # ten simulated hours a real second
    rig = Rig(grid_specs(households=3, roofs=1, lights=0, batteries=1), clock=clock)
    rig.fleet.after_sweep = None  # a slow backend: it answers only at the end
    deadline = time.monotonic() + 30
    while (rig.fleet.cursor or 0) < T0 + 3 * HOUR and time.monotonic() < deadline:
        rig.fleet.step()
        time.sleep(0.01)
    stats = rig.fleet.stats()
    # Hours of simulated time without an ack, but the 60 s ack timeout runs
    # in real time: every reading went out exactly once.
    assert stats.closed >= 3 * len(rig.specs)
    assert stats.sent == stats.closed and stats.acked == 0
    rig.backend.poll()
    rig.fleet.step()
    assert rig.fleet.stats().acked == stats.closed
