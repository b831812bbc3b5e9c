"""The simulated fleet end to end: meters registered in the database, the real
Mosquitto with generated credentials and ACL (the ``mosquitto`` fixture), the
real firmware publishing as each meter, and the real ``ingest_mqtt`` storing
what it sends."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from demo.clock import demo_clock_stop
from demo.fleet import grid_fleet
from firmware.sim.clock import SimClock
from firmware.sim.faults import fault_parse
from meters.models import IngestCounter, Reading, RejectedReading
from meters.protocol import MeterRef, payload_decode, reading_verify, topic_parse
from meters.tests.factories import grid_make, meter_issue
from meters.tests.mosquitto import MqttProbe
from meters.tests.test_ingest_mqtt import IngestProcess
from utility.lib.timeutil import interval_floor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

HOUR = timedelta(hours=1)
FLEET = [  # public id, registry kind, public (street light)
    ("M-H1", "consumer", False),
    ("M-H2", "consumer", False),
    ("M-H3", "consumer", False),
    ("M-P1", "producer", False),
    ("M-P2", "producer", False),
    ("SL-1", "consumer", True),
    ("B-1", "prosumer", False),
]


@pytest.fixture
def registered(mosquitto, settings):
    """A grid with the fleet's meters registered, the broker's credentials in
    sync, and ``MQTT_URL`` pointing at the test broker; yields the secrets."""
    settings.MQTT_URL = mosquitto.url
    slug = f"sim-{uuid.uuid4().hex[:8]}"
    grid = grid_make(slug, now=datetime.now(UTC) - timedelta(days=1))
    suffix = uuid.uuid4().hex[:4]
    secrets = {}
    for public_id, kind, public in FLEET:
        issued = meter_issue(grid, f"{public_id}-{suffix}", kind, public=public)
        secrets[issued.meter.public_id] = issued.secret
    mosquitto.sync_credentials()
    yield grid, secrets
    demo_clock_stop()


@pytest.fixture
def ingest(mosquitto, tmp_path):
    started = []

    def start() -> IngestProcess:
        process = IngestProcess(mosquitto, tmp_path, f"sim-ingest-{uuid.uuid4().hex[:8]}")
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()


def hours_ago(count: int) -> datetime:
    """An aligned hour ``count`` hours back: a simulated run from there stays
    in the past of the ingest's wall clock (it refuses future intervals)."""
    return interval_floor(datetime.now(UTC), 3600) - count * HOUR


def run_fleet(fleet, hours: int) -> threading.Thread:
    runner = threading.Thread(
        target=fleet.run, kwargs={"until_s": fleet.start_s + hours * 3600, "tick_s": 0.02}, daemon=True
    )
    runner.start()
    return runner


def test_every_simulated_reading_reaches_the_backend_with_a_valid_signature(mosquitto, registered):
    grid, secrets = registered
    start = hours_ago(6)
    # MQTT_URL (the test broker) is the default: each meter logs in as itself.
    fleet = grid_fleet(grid, SimClock(start.timestamp(), speed=7200))
    received: dict[tuple[str, str], list[dict]] = {}
    with MqttProbe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as backend:
        assert backend.connect() == 0
        assert backend.subscribe(f"grid/{grid.slug}/meters/+/readings") == [1]
        runner = run_fleet(fleet, hours=3)
        deadline = time.monotonic() + 90
        while len(received) < 3 * len(secrets) and time.monotonic() < deadline:
            message = backend.next_message(timeout_s=1)
            if message is None:
                continue
            topic = topic_parse(message.topic)
            body = payload_decode(message.payload)
            meter = MeterRef(topic.meter, grid.slug, True, grid.interval_s)
            # The platform's own verification: signature, fields, aligned period.
            report = reading_verify(topic, body, meter, secrets[topic.meter], datetime.now(UTC))
            received.setdefault((report.meter, body["period_start"]), []).append(body)
            ack = {"seq": report.seq, "status": "accepted", "reason": None}
            assert backend.publish(message.topic.rsplit("/", 1)[0] + "/ack", json.dumps(ack).encode()) == 0
        runner.join(60)
    assert not runner.is_alive()
    periods = [f"{start + n * HOUR:%Y-%m-%dT%H:%M:%SZ}" for n in range(3)]
    assert sorted(received) == sorted((meter, period) for meter in secrets for period in periods)
    # Sent once each: the ack timeout runs in real time, not at 7200x.
    assert [len(copies) for copies in received.values()] == [1] * len(received)
    stats = fleet.stats()
    assert (stats.closed, stats.acked, stats.queued) == (3 * len(secrets), 3 * len(secrets), 0)


def test_the_ingest_stores_every_simulated_reading_exactly_once(mosquitto, registered, ingest):
    grid, secrets = registered
    meters = sorted(secrets)
    garbage, offline = meters[0], meters[1]
    ingest()
    start = hours_ago(6)
    faults = [fault_parse(f"garbage:{garbage}"), fault_parse(f"offline:{offline}@1h+2h")]
    fleet = grid_fleet(grid, SimClock(start.timestamp(), speed=7200), faults=faults)
    runner = run_fleet(fleet, hours=4)
    runner.join(120)
    assert not runner.is_alive()
    stats = fleet.stats()
    assert (stats.closed, stats.acked, stats.queued, stats.dead_letter) == (28, 28, 0, 0)
    stored = Reading.objects.filter(meter__grid=grid)
    assert stored.count() == 4 * len(secrets)
    per_meter = Counter(stored.values_list("meter__public_id", flat=True))
    assert per_meter == dict.fromkeys(secrets, 4)
    for meter in secrets:
        readings = list(stored.filter(meter__public_id=meter).order_by("interval_start"))
        assert [r.interval_start for r in readings] == [start + n * HOUR for n in range(4)]
        assert [r.seq for r in readings] == [1, 2, 3, 4]
        assert readings[-1].import_total_wh == sum(r.import_wh for r in readings)
    # The garbage was refused and counted, reason by reason; nothing else was.
    rejected = Counter(RejectedReading.objects.filter(meter_public_id__in=meters).values_list("reason", flat=True))
    assert rejected == {"bad_json": 4, "bad_signature": 4}
    counted = dict(IngestCounter.objects.filter(status="rejected").values_list("reason", "count"))
    assert counted == {"bad_json": 4, "bad_signature": 4}
    assert IngestCounter.objects.get(status="accepted", reason="").count == 28
    # The grid exported about 10 % more than it imported, every hour.
    for n in range(4):
        hour = stored.filter(interval_start=start + n * HOUR)
        import_wh = sum(hour.values_list("import_wh", flat=True))
        export_wh = sum(hour.values_list("export_wh", flat=True))
        assert abs(export_wh - import_wh * 110 // 100) <= 5


def test_the_simulate_command_runs_the_first_meters_of_a_grid(mosquitto, registered, ingest, capsys):
    grid, _ = registered
    ingest()
    start = hours_ago(5)
    call_command(
        "simulate",
        "--grid",
        grid.slug,
        "--meters",
        "3",
        "--speed",
        "7200",
        "--start",
        f"{start:%Y-%m-%dT%H:%M:%SZ}",
        "--hours",
        "2",
        "--tick-ms",
        "20",
    )
    output = capsys.readouterr().out.splitlines()
    assert output[0].startswith(f"simulating 3 meters of grid '{grid.slug}' from {start:%Y-%m-%d %H:%M}Z at 7200x")
    assert [line[:17] for line in output if line.startswith("20")] == [
        f"{start + n * HOUR:%Y-%m-%dT%H:%M}Z" for n in range(2)
    ]
    assert output[-1] == "stopped: 6 readings closed, 6 sent, 6 acked, 0 queued"
    first_three = list(grid.meters.order_by("pk").values_list("public_id", flat=True)[:3])
    stored = Counter(Reading.objects.filter(meter__grid=grid).values_list("meter__public_id", flat=True))
    assert stored == dict.fromkeys(first_three, 2)


def test_a_second_run_resumes_where_the_ingest_left_the_meters(mosquitto, registered, ingest, capsys):
    grid, secrets = registered
    ingest()
    start = hours_ago(6)
    for begin in (start, start + 2 * HOUR):
        options = ["--speed", "7200", "--hours", "2", "--tick-ms", "20", "--start", f"{begin:%Y-%m-%dT%H:%M:%SZ}"]
        call_command("simulate", "--grid", grid.slug, *options)
    # No journal was kept (memory): the second fleet took seq and registers
    # from the database, so the ingest took its readings as the next ones.
    stored = Reading.objects.filter(meter__grid=grid)
    assert stored.count() == 4 * len(secrets)
    assert set(stored.filter(interval_start=start + 2 * HOUR).values_list("seq", flat=True)) == {3}
    assert not RejectedReading.objects.filter(meter_public_id__in=secrets).exists()
