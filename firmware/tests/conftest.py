"""Firmware test helpers: a meter on in-memory drivers, and an anonymous
Mosquitto of our own on a free port (the firmware does not depend on the
platform's broker setup). A missing ``mosquitto`` fails the tests that need
it; it never skips them."""

import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from firmware.drivers import ManualClock, MemoryRelay, ScriptedSource
from firmware.journal import MemoryJournal
from firmware.meter import Meter
from firmware.signing import Signer
from firmware.transport_memory import MemoryBroker, MemoryTransport

SECRET = "test-secret-m1"
GRID = "g1"
METER = "m-1"
BASE = f"grid/{GRID}/meters/{METER}/"
T0 = 1767225600  # 2026-01-01T00:00:00Z
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


class Rig:
    """One meter on memory drivers; ``reboot()`` is a power cut and a restart
    over the same journal (the old instance is dropped without a word)."""

    def __init__(self, journal=None, clock=None, broker=None, **config):
        self.broker = broker or MemoryBroker()
        self.clock = clock or ManualClock(T0)
        self.source = ScriptedSource()
        self.journal = journal or MemoryJournal()
        self.config = {"grid": GRID, "meter": METER, "secret": SECRET, "interval_s": 900, **config}
        self.signer = Signer(SECRET)
        self.logs = []
        self.meter = None
        self.relay = None
        self.transport = None
        self.start()

    def start(self):
        self.relay = MemoryRelay()
        self.transport = MemoryTransport(self.broker)
        self.meter = Meter(
            self.config, self.source, self.relay, self.clock, self.journal, self.transport, self.logs.append
        )
        self.meter.tick()
        return self.meter

    def reboot(self):
        if self.transport.is_connected():
            self.transport.crash()
        return self.start()

    def run(self, seconds, step=1, backend=None):
        for _ in range(0, seconds, step):
            self.clock.advance(step)
            self.meter.tick()
            if backend is not None:
                backend.poll()
                self.meter.tick()

    def published(self, leaf):
        return [payload for topic, payload, _ in self.broker.published if topic == BASE + leaf]

    def ack(self, seq, status="accepted", reason=None):
        self.broker.publish(BASE + "ack", json.dumps({"seq": seq, "status": status, "reason": reason}).encode())
        self.meter.tick()

    def decide(self, payload, retain=True):
        self.broker.publish(BASE + "decision", payload, retain)
        self.meter.tick()


class Backend:
    """A stand-in for the platform's ingest on a ``MemoryBroker``: verifies each
    reading with the standard library (json.dumps + hmac), stores it and acks
    ``accepted`` (``duplicate`` for a seq it already has)."""

    def __init__(self, broker, secret=SECRET):
        self.secret = secret
        self.received = {}
        self.acks = []
        self.transport = MemoryTransport(broker)
        self.transport.set_callback(self._on_reading)
        self.transport.connect("backend")
        self.transport.subscribe("grid/+/meters/+/readings")

    def _on_reading(self, topic, payload):
        body = json.loads(payload)
        canonical = json.dumps(
            {k: v for k, v in body.items() if k != "sig"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        expected = hmac.new(self.secret.encode(), canonical, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, body.get("sig", "")):
            status, reason = "rejected", "bad_signature"
        elif body["seq"] in self.received:
            status, reason = "duplicate", None
        else:
            self.received[body["seq"]] = body
            status, reason = "accepted", None
        self.acks.append((body["seq"], status))
        ack = json.dumps({"seq": body["seq"], "status": status, "reason": reason}).encode()
        self.transport.publish(topic.rsplit("/", 1)[0] + "/ack", ack)

    def poll(self):
        self.transport.poll()


@pytest.fixture
def rig():
    return Rig()


def mosquitto_binary():
    for candidate in (os.environ.get("MOSQUITTO_BIN", ""), shutil.which("mosquitto") or "", *MOSQUITTO_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("mosquitto is not installed (apt-get install mosquitto, or set MOSQUITTO_BIN)", pytrace=False)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AnonymousMosquitto:
    def __init__(self, workdir: Path):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\nlog_dest file {self.log}\n"
        )
        self.process = None

    def start(self):
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        log = self.log.read_text() if self.log.exists() else ""
        pytest.fail(f"the test Mosquitto did not start on port {self.port}: {log[-500:]}", pytrace=False)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def anonymous_mosquitto(tmp_path_factory):
    broker = AnonymousMosquitto(tmp_path_factory.mktemp("firmware-mosquitto")).start()
    yield broker
    broker.stop()
