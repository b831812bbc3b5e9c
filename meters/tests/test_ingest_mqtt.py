"""``manage.py ingest_mqtt`` end to end: a real Mosquitto (the ``mosquitto``
fixture, generated credentials and ACL), the real command as a subprocess on
the test database, meters publishing signed readings with their own
credentials."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings
from django.db.models import Count, Max, Min
from paho.mqtt.enums import CallbackAPIVersion

from meters.models import IngestCounter, Reading, RejectedReading
from meters.protocol import topic_ack
from meters.tests.factories import grid_make, meter_issue
from meters.tests.mosquitto import MqttProbe
from meters.tests.readings import MeterStream, encoded, signed
from utility.lib.timeutil import interval_floor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]


def database_url_of_tests() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class IngestProcess:
    """``python manage.py ingest_mqtt`` on the test database and test broker."""

    def __init__(self, broker, workdir: Path, client_id: str, *extra: str) -> None:
        self.broker, self.client_id, self.extra = broker, client_id, extra
        self.log_path = workdir / f"ingest-{client_id}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> IngestProcess:
        env = {**os.environ, "DATABASE_URL": database_url_of_tests(), "MQTT_URL": self.broker.url, "LOG_LEVEL": "INFO"}
        command = [
            sys.executable,
            "manage.py",
            "ingest_mqtt",
            "--client-id",
            self.client_id,
            "--session-expiry-s",
            "300",
        ]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([*command, *self.extra], cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while "subscribed to" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"ingest_mqtt did not subscribe:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout_s: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


@pytest.fixture
def ingest(mosquitto, tmp_path):
    """Start ``ingest_mqtt`` processes; every one is killed at the end of the test."""
    started: list[IngestProcess] = []

    def start(client_id: str | None = None, *extra: str) -> IngestProcess:
        process = IngestProcess(mosquitto, tmp_path, client_id or f"test-ingest-{uuid.uuid4().hex[:8]}", *extra)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def recent_hours(count: int) -> datetime:
    """The start of an hour-long interval ``count`` intervals before the current one."""
    return interval_floor(datetime.now(UTC), 3600) - timedelta(hours=count)


def ack_of(probe: MqttProbe) -> dict:
    message = probe.next_message(timeout_s=30)
    assert message is not None, "no ack within 30 s"
    return json.loads(message.payload)


def test_signed_reading_is_stored_and_acked_then_a_resend_is_a_duplicate(mosquitto, ingest):
    first = recent_hours(3)
    grid = grid_make("e2e", now=first)
    alice, bob = meter_issue(grid, "e2e-alice"), meter_issue(grid, "e2e-bob")
    mosquitto.sync_credentials()
    ingest()
    stream = MeterStream("e2e", "e2e-alice", alice.secret, first)

    with MqttProbe(mosquitto, "e2e-alice", alice.secret, timeout_s=30) as meter:
        assert meter.connect() == 0
        assert meter.subscribe(topic_ack("e2e", "e2e-alice")) == [1]
        assert meter.publish(stream.topic, stream.payload(0)) == 0
        accepted = ack_of(meter)
        assert meter.publish(stream.topic, stream.payload(0)) == 0
        duplicate = ack_of(meter)
        assert meter.publish(stream.topic, encoded(signed(bob.secret, stream.body(1)))) == 0
        rejected = ack_of(meter)

    assert accepted == {"seq": 1, "status": "accepted", "reason": None}
    assert duplicate == {"seq": 1, "status": "duplicate", "reason": None}
    assert rejected == {"seq": 2, "status": "rejected", "reason": "bad_signature"}
    reading = Reading.objects.get()
    assert (reading.meter.public_id, reading.interval_start, reading.import_wh) == ("e2e-alice", first, 100)
    assert RejectedReading.objects.get().reason == "bad_signature"


def test_sigterm_finishes_and_exits_cleanly(mosquitto, ingest):
    process = ingest()

    assert process.terminate() == 0
    assert "stopped after" in process.log()


def _meter_clients(mosquitto, meters) -> list[mqtt.Client]:
    clients = []
    for public_id, secret in meters:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=public_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(public_id, secret)
        client.max_inflight_messages_set(100)
        client.connect(mosquitto.host, mosquitto.port, keepalive=30)
        client.loop_start()
        clients.append(client)
    for client in clients:
        wait_until(client.is_connected, 10, "meter clients to connect")
    return clients


def _publish(clients, streams, intervals) -> None:
    """Every meter publishes the given intervals with QoS 1; returns once the
    broker acknowledged them all (it has them, queued or delivered)."""
    infos = [
        client.publish(stream.topic, stream.payload(index), qos=1)
        for index in intervals
        for client, stream in zip(clients, streams, strict=True)
    ]
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published()


def test_sigkill_in_the_middle_of_5000_readings_loses_nothing_and_stores_each_once(mosquitto, ingest):
    meters_count, intervals = 50, 100
    first = recent_hours(intervals + 1)
    grid = grid_make("crash", now=first)
    issued = [meter_issue(grid, f"crash-{n:02d}") for n in range(meters_count)]
    mosquitto.sync_credentials()
    streams = [MeterStream("crash", m.meter.public_id, m.secret, first) for m in issued]
    clients = _meter_clients(mosquitto, [(m.meter.public_id, m.secret) for m in issued])
    client_id = f"test-crash-{uuid.uuid4().hex[:8]}"
    try:
        victim = ingest(client_id, "--batch-size", "100", "--batch-ms", "10")
        _publish(clients, streams, range(0, intervals // 2))
        wait_until(lambda: Reading.objects.count() >= 300, 30, "the ingest to store some readings")
        victim.kill()  # SIGKILL: no chance to finish its batch or ack
        stored_at_kill = Reading.objects.count()
        # The rest arrives while the ingest is down: the broker queues it in the session.
        _publish(clients, streams, range(intervals // 2, intervals))
        survivor = ingest(client_id, "--batch-size", "100", "--batch-ms", "10")
        total = meters_count * intervals
        wait_until(lambda: Reading.objects.count() >= total, 45, f"all {total} readings")
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()

    assert 0 < stored_at_kill < total, "the kill was not in the middle of the stream"
    per_meter = Reading.objects.values("meter").annotate(
        n=Count("id"), first=Min("interval_start"), last=Max("interval_start"), top=Max("seq"), low=Min("seq")
    )
    assert len(per_meter) == meters_count
    for row in per_meter:
        # Unique (meter, interval) + 100 rows spanning exactly 100 intervals: no gap, no double.
        assert (row["n"], row["low"], row["top"]) == (intervals, 1, intervals)
        assert (row["first"], row["last"]) == (first, first + timedelta(hours=intervals - 1))
    assert RejectedReading.objects.count() == 0
    assert IngestCounter.objects.get(status="accepted", reason="").count == total
    assert survivor.terminate() == 0


class TcpProxy:
    """A TCP relay to PostgreSQL that a test can cut and restore: the database
    "goes away" for the ingest only."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def start(self) -> TcpProxy:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.port = self.listener.getsockname()[1]
        self.listener.listen()
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        assert self.listener is not None
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()


def _one_reading(mosquitto, grid_slug: str, meter_id: str):
    first = recent_hours(4)
    grid = grid_make(grid_slug, now=first)
    issued = meter_issue(grid, meter_id)
    mosquitto.sync_credentials()
    return issued, MeterStream(grid_slug, meter_id, issued.secret, first)


def test_database_outage_holds_the_acks_and_loses_nothing(mosquitto, ingest, monkeypatch):
    issued, stream = _one_reading(mosquitto, "dbout", "dbout-1")
    db = settings.DATABASES["default"]
    proxy = TcpProxy(int(db["PORT"] or 5432)).start()
    url = database_url_of_tests().replace(f":{db['PORT'] or 5432}/", f":{proxy.port}/")
    monkeypatch.setattr(sys.modules[__name__], "database_url_of_tests", lambda: url)
    process = ingest()

    with MqttProbe(mosquitto, "dbout-1", issued.secret, timeout_s=30) as meter:
        assert meter.connect() == 0
        assert meter.subscribe(topic_ack("dbout", "dbout-1")) == [1]
        assert meter.publish(stream.topic, stream.payload(0)) == 0
        assert ack_of(meter)["status"] == "accepted"
        proxy.cut()
        assert meter.publish(stream.topic, stream.payload(1)) == 0
        # No commit, so no ack: the ingest backs off and retries the same batch.
        assert meter.next_message(timeout_s=3) is None
        assert Reading.objects.count() == 1
        proxy.start()  # same port
        late_ack = ack_of(meter)

    assert late_ack == {"seq": 2, "status": "accepted", "reason": None}
    assert "database unavailable" in process.log()
    assert list(Reading.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]


def test_broker_restart_the_ingest_reconnects_and_goes_on(mosquitto, ingest):
    issued, stream = _one_reading(mosquitto, "brk", "brk-1")
    process = ingest()

    with MqttProbe(mosquitto, "brk-1", issued.secret, timeout_s=30) as meter:
        assert meter.connect() == 0
        assert meter.publish(stream.topic, stream.payload(0)) == 0
    wait_until(lambda: Reading.objects.count() == 1, 30, "the first reading")
    mosquitto.restart()
    wait_until(lambda: process.log().count("subscribed to") >= 2, 60, "the ingest to reconnect")
    with MqttProbe(mosquitto, "brk-1", issued.secret, timeout_s=30) as meter:
        assert meter.connect() == 0
        assert meter.subscribe(topic_ack("brk", "brk-1")) == [1]
        assert meter.publish(stream.topic, stream.payload(1)) == 0
        ack = ack_of(meter)

    assert ack == {"seq": 2, "status": "accepted", "reason": None}
    assert "disconnected from the broker" in process.log()
    assert Reading.objects.count() == 2


def test_a_grid_shard_takes_only_its_grids_readings(mosquitto, ingest):
    north, north_stream = _one_reading(mosquitto, "shard-n", "shard-n-1")
    south, south_stream = _one_reading(mosquitto, "shard-s", "shard-s-1")
    process = ingest(None, "--grid", "shard-n")

    for issued, stream in ((south, south_stream), (north, north_stream)):
        with MqttProbe(mosquitto, issued.meter.public_id, issued.secret, timeout_s=30) as meter:
            assert meter.connect() == 0
            assert meter.publish(stream.topic, stream.payload(0)) == 0
    wait_until(lambda: Reading.objects.filter(meter__public_id="shard-n-1").exists(), 30, "the north reading")
    time.sleep(1)

    assert not Reading.objects.filter(meter__public_id="shard-s-1").exists()
    assert "subscribed to grid/shard-n/meters/+/readings" in process.log()
