"""The broker enforces who may say what: generated credentials and ACL against a
real Mosquitto 2.0 (the ``mosquitto`` fixture), MQTT v5 reason codes."""

from __future__ import annotations

import threading

import pytest

from meters.tests.factories import grid_make, meter_issue
from meters.tests.mosquitto import MqttProbe

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

NOT_AUTHORIZED = 135
# PUBACK success: 0, or 16 "no matching subscribers" (MQTT v5).
DELIVERED = (0, 16)
READING = {"v": 1, "meter": "A1", "seq": 1}


@pytest.fixture
def two_meters(mosquitto):
    mosquitto.clear_retained()
    """Meters A1 and B1 on grid ``demo`` (and C1 on ``north``), in the broker's files."""
    demo, north = grid_make("demo"), grid_make("north")
    issued = {
        "A1": meter_issue(demo, "A1").secret,
        "B1": meter_issue(demo, "B1").secret,
        "C1": meter_issue(north, "C1").secret,
    }
    mosquitto.sync_credentials()
    return issued


def probe(mosquitto, username, password, **options) -> MqttProbe:
    client = MqttProbe(mosquitto, username, password, **options)
    assert client.connect() == 0
    return client


def test_a_meter_publishes_its_own_readings_and_status(mosquitto, two_meters):
    with probe(mosquitto, "A1", two_meters["A1"]) as a1:
        assert a1.publish("grid/demo/meters/A1/readings", READING) in DELIVERED
        assert a1.publish("grid/demo/meters/A1/status", b"online", retain=True) in DELIVERED


def test_the_backend_receives_what_a_meter_publishes(mosquitto, two_meters):
    with (
        probe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as backend,
        probe(mosquitto, "A1", two_meters["A1"]) as a1,
    ):
        assert backend.subscribe("grid/+/meters/+/readings") == [1]
        assert a1.publish("grid/demo/meters/A1/readings", READING) in DELIVERED
        message = backend.next_message()
        assert message is not None
        assert (message.topic, message.payload) == (
            "grid/demo/meters/A1/readings",
            b'{"v": 1, "meter": "A1", "seq": 1}',
        )


@pytest.mark.parametrize("client_id", ["", "B1"], ids=["own-client-id", "spoofed-client-id-of-B1"])
def test_a_meter_cannot_publish_under_another_meters_topic(mosquitto, two_meters, client_id):
    with (
        probe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as backend,
        probe(mosquitto, "A1", two_meters["A1"], client_id=client_id) as a1,
    ):
        backend.subscribe("grid/#")
        assert a1.publish("grid/demo/meters/B1/readings", READING) == NOT_AUTHORIZED
        assert a1.publish("grid/demo/meters/B1/status", b"offline") == NOT_AUTHORIZED
        # Nor write what only the backend writes.
        assert a1.publish("grid/demo/meters/A1/decision", b"{}") == NOT_AUTHORIZED
        assert a1.publish("grid/demo/meters/A1/ack", b"{}") == NOT_AUTHORIZED
        assert a1.publish("grid/demo/price", b"{}") == NOT_AUTHORIZED
        assert a1.publish("grid/demo/meters/A1/readings/extra", b"{}") == NOT_AUTHORIZED
        # The refusals delivered nothing; A1's own topic still works.
        assert a1.publish("grid/demo/meters/A1/readings", READING) in DELIVERED
        message = backend.next_message()
        assert message is not None and message.topic == "grid/demo/meters/A1/readings"
        assert backend.next_message(timeout_s=0.5) is None


def test_a_meter_cannot_read_another_meters_decision_or_ack(mosquitto, two_meters):
    with (
        probe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as backend,
        probe(mosquitto, "A1", two_meters["A1"]) as a1,
    ):
        codes = a1.subscribe("grid/demo/meters/B1/decision") + a1.subscribe("grid/demo/meters/B1/ack")
        codes += a1.subscribe("grid/demo/meters/+/decision") + a1.subscribe("grid/#")
        assert a1.subscribe("grid/demo/meters/A1/decision") == [1]
        assert backend.publish("grid/demo/meters/B1/decision", b'{"seq": 1}') in DELIVERED
        assert backend.publish("grid/demo/meters/B1/ack", b'{"seq": 1}') in DELIVERED
        assert backend.publish("grid/demo/meters/A1/decision", b'{"seq": 7}') in DELIVERED
        received = []
        while (message := a1.next_message(timeout_s=1.0)) is not None:
            received.append(message.topic)
        # Mosquitto 2.0 grants the subscriptions (SUBACK 1) and applies the read
        # ACL on delivery: only A1's own decision arrives (once per matching
        # subscription), never B1's decision or ack.
        assert set(received) == {"grid/demo/meters/A1/decision"}
        assert all(code in (1, NOT_AUTHORIZED) for code in codes)


def test_every_meter_reads_the_price(mosquitto, two_meters):
    with (
        probe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as backend,
        probe(mosquitto, "C1", two_meters["C1"]) as c1,
    ):
        assert c1.subscribe("grid/north/price") == [1]
        assert backend.publish("grid/north/price", b'{"tariff_uk_per_kwh": 1000000}') in DELIVERED
        message = c1.next_message()
        assert message is not None and message.payload == b'{"tariff_uk_per_kwh": 1000000}'


def test_wrong_or_unknown_credentials_are_refused_at_connect(mosquitto, two_meters):
    attempts = [
        ("A1", two_meters["B1"]),  # B1's secret is not A1's
        ("A1", ""),
        ("nobody", "x"),
        (mosquitto.backend_username, "wrong"),
    ]
    for username, password in attempts:
        client = MqttProbe(mosquitto, username, password)
        try:
            assert client.connect() == NOT_AUTHORIZED, username
        finally:
            client.close()


def test_a_deactivated_meter_is_cut_off_at_the_next_reload(mosquitto, two_meters):
    """On SIGHUP Mosquitto re-checks connected clients against the new password
    file: B1, connected, is disconnected, and cannot log in again."""
    from meters.models import Meter

    b1 = probe(mosquitto, "B1", two_meters["B1"])
    try:
        disconnected = threading.Event()
        b1.client.on_disconnect = lambda *args: disconnected.set()
        Meter.objects.filter(public_id="B1").update(active=False)
        mosquitto.sync_credentials()
        assert disconnected.wait(5), "B1 is still connected after the reload"
    finally:
        b1.close()
    refused = MqttProbe(mosquitto, "B1", two_meters["B1"])
    try:
        assert refused.connect() == NOT_AUTHORIZED
    finally:
        refused.close()
    with probe(mosquitto, "A1", two_meters["A1"]) as a1:  # the others are unaffected
        assert a1.publish("grid/demo/meters/A1/readings", READING) in DELIVERED


def test_the_grid_level_is_not_pinned_by_the_broker(mosquitto, two_meters):
    """Documented limit (meters/broker.py): ACL patterns cannot know a meter's
    grid, so the broker lets A1 (grid demo) write under grid north; the ingest
    rejects that reading as a topic/grid mismatch."""
    with probe(mosquitto, "A1", two_meters["A1"]) as a1:
        assert a1.publish("grid/north/meters/A1/readings", READING) in DELIVERED


def test_the_broker_drops_oversized_publishes(mosquitto, two_meters):
    """max_packet_size 65536: a runaway meter is cut off at the broker (it is
    disconnected, nothing is delivered) before it can flood the ingest; up to
    that size the ingest rejects and acks it (too_large over 16 KiB)."""
    with probe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as backend:
        backend.subscribe("grid/+/meters/+/readings")
        a1 = probe(mosquitto, "A1", two_meters["A1"], timeout_s=2)
        try:
            with pytest.raises(TimeoutError, match="no PUBACK"):
                a1.publish("grid/demo/meters/A1/readings", b"x" * 70_000)
        finally:
            a1.close()  # the probe never reconnects, so never re-sends it
        assert backend.next_message(timeout_s=0.5) is None
        with probe(mosquitto, "A1", two_meters["A1"]) as again:
            assert again.publish("grid/demo/meters/A1/readings", b"x" * 20_000) == 0
        message = backend.next_message()
        assert message is not None and len(message.payload) == 20_000
