"""End to end on a real Mosquitto (our own anonymous instance) with the paho
adapter: the meter publishes a signed reading, a stand-in backend acks it, the
meter deletes it; a retained signed decision is applied; the will says offline."""

import hashlib
import hmac
import json
import queue
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.drivers import ManualClock, MemoryRelay, ScriptedSource
from firmware.journal import FileJournal
from firmware.meter import Meter
from firmware.signing import Signer, wire
from firmware.transport_paho import PahoTransport

from .conftest import T0

pytestmark = pytest.mark.services
SECRET = "e2e-secret-ü"


def reference_valid(body, secret):
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != "sig"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    return hmac.compare_digest(hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest(), body["sig"])


class PahoBackend:
    """The platform's side, as plain paho: records everything under the grid
    and acks every correctly signed reading."""

    def __init__(self, broker, grid):
        self.messages = queue.Queue()
        self.retained = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"backend-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"grid/{grid}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        self.retained[message.topic] = message.payload
        self.messages.put((message.topic, message.payload))
        if message.topic.endswith("/readings"):
            body = json.loads(message.payload)
            status = "accepted" if reference_valid(body, SECRET) else "rejected"
            ack = {"seq": body["seq"], "status": status, "reason": None if status == "accepted" else "bad_signature"}
            client.publish(message.topic.rsplit("/", 1)[0] + "/ack", json.dumps(ack), qos=1)

    def publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def tick_until(meter, condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meter.tick()
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_meter_on_real_mosquitto(anonymous_mosquitto, tmp_path):
    grid, meter_id = f"e2e{uuid.uuid4().hex[:6]}", "m-e2e"
    base = f"grid/{grid}/meters/{meter_id}/"
    backend = PahoBackend(anonymous_mosquitto, grid)
    signer = Signer(SECRET)
    decision = {"state": "disconnect", "reason": "low_balance", "balance_uk": -1, "issued_at": "2026-01-01T00:00:00Z"}
    backend.publish(base + "decision", wire(signer.signed(dict(decision, seq=3))), retain=True)

    clock, source, relay = ManualClock(T0 + 5), ScriptedSource(), MemoryRelay()
    transport = PahoTransport(anonymous_mosquitto.host, anonymous_mosquitto.port)
    config = {"grid": grid, "meter": meter_id, "secret": SECRET, "interval_s": 900}
    meter = Meter(config, source, relay, clock, FileJournal(str(tmp_path)), transport)
    try:
        assert tick_until(meter, lambda: relay.closed is False), "the retained decision was not applied"
        assert meter.state["dseq"] == 3
        assert tick_until(
            meter, lambda: json.loads(backend.retained.get(base + "state", b"{}")).get("decision_seq") == 3
        )
        assert backend.retained[base + "status"] == b"online"

        source.add(777, 12, 2304)
        clock.advance(900)
        meter.tick()
        assert meter.queued_seqs() == [1]
        assert tick_until(meter, lambda: meter.queued_seqs() == []), "the ack did not delete the reading"
        reading = json.loads(backend.retained[base + "readings"])
        assert reference_valid(reading, SECRET)
        assert (reading["seq"], reading["import_wh"], reading["v_min"], reading["clock"]) == (1, 777, 230.4, "ntp")
        assert meter.counters["acked"] == 1

        # A newer decision, published live, is applied too; a stale one is not.
        backend.publish(base + "decision", wire(signer.signed(dict(decision, state="connect", seq=4))), retain=True)
        assert tick_until(meter, lambda: relay.closed is True)
        backend.publish(base + "decision", wire(signer.signed(dict(decision, seq=2))), retain=True)
        assert tick_until(meter, lambda: meter.counters["decisions_ignored"] == 1)
        assert relay.closed is True

        transport.crash()  # the TCP connection dies without DISCONNECT
        deadline = time.monotonic() + 10
        while backend.retained.get(base + "status") != b"offline" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.retained[base + "status"] == b"offline"

        # The meter notices, backs off, reconnects and says online again.
        source.add(5, 0)
        clock.advance(900)
        meter.tick()
        assert not meter.online
        clock.advance(2)  # the simulated clock drives the backoff, too
        assert tick_until(meter, lambda: meter.counters["connects"] == 2 and meter.queued_seqs() == [])
        assert json.loads(backend.retained[base + "readings"])["seq"] == 2
        assert tick_until(meter, lambda: backend.retained[base + "status"] == b"online")
    finally:
        meter.shutdown()
        backend.stop()
