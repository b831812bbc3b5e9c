"""The bulk QoS 1 publisher: its packets byte for byte, then a real Mosquitto:
thousands of retained messages confirmed and read back, the broker's ACL
refusals reported per message, a refused login, an absent broker, and the
decisions of a whole grid published through it."""

from __future__ import annotations

import json
import socket
import threading
import uuid

import pytest

from meters.models import MeterDecision
from meters.mqtt import MqttPublishError, memory_publisher, mqtt_url_parse, publishers_close
from meters.mqtt_bulk import (
    BulkPublisher,
    BulkSender,
    connect_packet,
    mqtt_publish_bulk,
    packet_split,
    publish_packet,
    subscribe_packet,
    varint,
    varint_read,
)
from meters.protocol import signature_valid
from meters.supply import meters_decide
from meters.tests.factories import T0, grid_make, meter_issue
from meters.tests.mosquitto import MqttProbe, free_port

# -- the packets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
     (268_435_455, b"\xff\xff\xff\x7f")],
)  # fmt: skip
def test_variable_byte_integers_as_the_mqtt_5_spec_tabulates(value, encoded):
    assert varint(value) == encoded


def test_varint_refuses_what_mqtt_cannot_carry():
    for value in (-1, 268_435_456):
        with pytest.raises(ValueError, match="variable byte integer"):
            varint(value)


def test_a_retained_qos_1_publish_packet():
    assert publish_packet(b"a/b", b"hi", 0x0102, retain=True) == (
        b"\x33"  # PUBLISH, QoS 1, retain
        b"\x0a"  # remaining length: 2 + 3 topic + 2 packet id + 1 properties + 2 payload
        b"\x00\x03a/b\x01\x02\x00hi"
    )
    assert publish_packet(b"a/b", b"", 1, retain=False)[0] == 0x32


def test_a_connect_packet_with_credentials():
    assert connect_packet("c", "u", "p", keepalive_s=60) == (
        b"\x10\x14"  # CONNECT, remaining length 11 + 9 = 20
        b"\x00\x04MQTT\x05\xc2\x00\x3c\x00"  # MQTT 5, username + password + clean start, keepalive 60, no properties
        b"\x00\x01c\x00\x01u\x00\x01p"
    )


# -- a real Mosquitto ------------------------------------------------------------------------


def _read_back(broker, topic_filter: str, count: int) -> dict[str, bytes]:
    probe = MqttProbe(broker, broker.backend_username, broker.backend_password)
    try:
        assert probe.connect() == 0
        assert probe.subscribe(topic_filter, qos=0) == [0]
        seen = {}
        while len(seen) < count:
            message = probe.next_message(10)
            assert message is not None, f"only {len(seen)} of {count} retained messages came back"
            assert message.retain
            seen[message.topic] = message.payload
        return seen
    finally:
        probe.close()


@pytest.mark.services
def test_thousands_of_retained_messages_are_confirmed_and_held_by_the_broker(mosquitto):
    prefix = f"bulk-{uuid.uuid4().hex[:8]}"
    messages = [(f"{prefix}/{i}", f'{{"n":{i}}}'.encode()) for i in range(3_000)]
    confirmed = mqtt_publish_bulk(messages, mqtt_url_parse(mosquitto.url), window=50_000)  # clipped to the broker's
    assert confirmed == [True] * 3_000
    assert _read_back(mosquitto, f"{prefix}/+", 3_000) == dict(messages)


@pytest.mark.services
@pytest.mark.django_db
def test_the_broker_refusing_some_messages_is_reported_per_message(mosquitto):
    issued = meter_issue(grid_make("bulk"), "bulk-m1")
    mosquitto.sync_credentials()
    as_meter = mqtt_url_parse(f"mqtt://bulk-m1:{issued.secret}@{mosquitto.host}:{mosquitto.port}")
    own, foreign = "grid/bulk/meters/bulk-m1/status", "grid/bulk/meters/someone-else/decision"
    confirmed = mqtt_publish_bulk([(own, b"online"), (foreign, b"{}"), (own, b"online")], as_meter, retain=False)
    assert confirmed == [True, False, True]  # 0x87 not authorized for the foreign topic only


@pytest.mark.services
def test_a_packet_above_the_brokers_maximum_is_not_sent_and_the_rest_go_through(mosquitto):
    prefix = f"big-{uuid.uuid4().hex[:8]}"
    messages = [(f"{prefix}/a", b"1"), (f"{prefix}/b", b"x" * 70_000), (f"{prefix}/c", b"3")]
    assert mqtt_publish_bulk(messages, mqtt_url_parse(mosquitto.url)) == [True, False, True]


@pytest.mark.services
def test_a_refused_login_or_an_absent_broker_raises_and_publishes_nothing(mosquitto):
    wrong = mqtt_url_parse(f"mqtt://{mosquitto.backend_username}:wrong@{mosquitto.host}:{mosquitto.port}")
    with pytest.raises(MqttPublishError, match=r"refused the login: reason code 13[45]"):
        mqtt_publish_bulk([("x/y", b"1")], wrong)
    with pytest.raises(MqttPublishError, match="cannot reach the MQTT broker"):
        mqtt_publish_bulk([("x/y", b"1")], mqtt_url_parse(f"mqtt://u:p@127.0.0.1:{free_port()}"), timeout_s=2)


def test_wildcards_are_not_topics_to_publish_to():
    endpoint = mqtt_url_parse("mqtt://u:p@127.0.0.1:1")
    for topic in ("a/+", "a/#", "", "a\0b"):
        with pytest.raises(ValueError, match="no wildcard"):
            mqtt_publish_bulk([(topic, b"1")], endpoint)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_whole_grids_decisions_go_out_on_one_bulk_connection(mosquitto, settings):
    settings.MQTT_PUBLISHER, settings.MQTT_URL, settings.MQTT_PUBLISH_TIMEOUT_S = "paho", mosquitto.url, 10
    memory_publisher().clear()
    grid = grid_make("bulkgrid")
    issued = {f"bg-{i:03d}": meter_issue(grid, f"bg-{i:03d}") for i in range(120)}  # above BULK_CONNECTION_MIN
    try:
        assert meters_decide([i.meter.pk for i in issued.values()], T0) == 120
    finally:
        publishers_close()
    assert MeterDecision.objects.filter(published=True).count() == 120
    assert memory_publisher().messages == []  # it really went to the broker
    held = _read_back(mosquitto, "grid/bulkgrid/meters/+/decision", 120)
    for topic, payload in held.items():
        decision = json.loads(payload)
        assert (decision["state"], decision["seq"]) == ("disconnect", 1)
        assert signature_valid(issued[topic.split("/")[3]].secret, decision)


# -- a scripted broker: the protocol corners Mosquitto will not show on demand --------------------


class ScriptedBroker(threading.Thread):
    """Accepts one connection, answers CONNECT with ``connack`` (reason code,
    Receive Maximum), then PUBACKs each PUBLISH with the reason code
    ``codes`` gives its position (default success), closing the connection
    instead at position ``close_at``. Records the most PUBLISHes it ever held
    unacknowledged."""

    def __init__(self, *, reason: int = 0, receive_maximum: int = 3, codes=None, close_at: int | None = None):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.reason, self.receive_maximum = reason, receive_maximum
        self.codes, self.close_at = codes or {}, close_at
        self.most_unacked = 0
        self.published: list[tuple[str, bytes, bool]] = []

    def endpoint(self):
        return mqtt_url_parse(f"mqtt://backend:pw@127.0.0.1:{self.port}")

    def run(self) -> None:
        sock, _ = self.server.accept()
        buffer = b""
        with sock:
            buffer = self._read_packet(sock, buffer)[1]  # CONNECT
            props = b"\x21" + self.receive_maximum.to_bytes(2, "big")
            sock.sendall(b"\x20" + varint(3 + len(props)) + bytes([0, self.reason]) + varint(len(props)) + props)
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    return
                buffer += data
                batch = []
                while True:
                    parsed = self._parse(buffer)
                    if parsed is None:
                        break
                    (kind, flags, body), buffer = parsed
                    if kind == 3:
                        batch.append((flags, body))
                self.most_unacked = max(self.most_unacked, len(batch))
                for flags, body in batch:
                    topic_len = int.from_bytes(body[:2], "big")
                    topic, packet_id = body[2 : 2 + topic_len].decode(), body[2 + topic_len : 4 + topic_len]
                    payload = body[5 + topic_len :]
                    position = len(self.published)
                    self.published.append((topic, payload, bool(flags & 1)))
                    if position == self.close_at:
                        return
                    code = self.codes.get(position, 0)
                    sock.sendall(b"\x40\x02" + packet_id if code == 0 else b"\x40\x03" + packet_id + bytes([code]))

    def _read_packet(self, sock, buffer):
        while (parsed := self._parse(buffer)) is None:
            buffer += sock.recv(1 << 16)
        return parsed

    @staticmethod
    def _parse(buffer: bytes):
        if len(buffer) < 2:
            return None
        length, multiplier, index = 0, 1, 1
        while True:
            if index >= len(buffer):
                return None
            length += (buffer[index] & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not buffer[index - 1] & 0x80:
                break
        if len(buffer) < index + length:
            return None
        return (buffer[0] >> 4, buffer[0] & 0x0F, buffer[index : index + length]), buffer[index + length :]


def _messages(count: int) -> list[tuple[str, bytes]]:
    return [(f"t/{i}", f"m{i}".encode()) for i in range(count)]


def test_never_more_in_flight_than_the_brokers_receive_maximum():
    broker = ScriptedBroker(receive_maximum=3)
    broker.start()
    assert mqtt_publish_bulk(_messages(20), broker.endpoint(), window=1000) == [True] * 20
    broker.join(5)
    assert broker.most_unacked <= 3
    assert broker.published == [(topic, payload, True) for topic, payload in _messages(20)]  # in order, retained


def test_a_failure_reason_code_marks_only_that_message():
    broker = ScriptedBroker(codes={1: 0x87, 3: 0x10})  # 0x10 "no matching subscribers" is a success
    broker.start()
    assert mqtt_publish_bulk(_messages(5), broker.endpoint(), retain=False) == [True, False, True, True, True]
    broker.join(5)
    assert {retained for *_, retained in broker.published} == {False}


def test_a_connection_lost_midway_leaves_the_rest_unconfirmed():
    broker = ScriptedBroker(receive_maximum=2, close_at=4)
    broker.start()
    confirmed = mqtt_publish_bulk(_messages(10), broker.endpoint(), timeout_s=5)
    assert confirmed[:4] == [True] * 4
    assert confirmed[4:] == [False] * 6


def test_a_silent_broker_times_out_without_guessing():
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        endpoint = mqtt_url_parse(f"mqtt://u:p@127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(MqttPublishError, match="no CONNACK"):
            mqtt_publish_bulk(_messages(1), endpoint, timeout_s=0.5)
    finally:
        server.close()


def test_a_login_refused_by_the_broker_raises():
    broker = ScriptedBroker(reason=0x86)  # bad user name or password
    broker.start()
    with pytest.raises(MqttPublishError, match="refused the login: reason code 134"):
        mqtt_publish_bulk(_messages(1), broker.endpoint())


# -- the lasting connection (the ingest's acks to meters) ----------------------------------


@pytest.mark.services
def test_a_bulk_publisher_keeps_one_connection_for_batch_after_batch(mosquitto):
    prefix = f"lasting-{uuid.uuid4().hex[:8]}"
    publisher = BulkPublisher(mqtt_url_parse(mosquitto.url))
    try:
        first = [(f"{prefix}/{i}", f"{i}".encode()) for i in range(500)]
        second = [(f"{prefix}/{i}", f"{i}".encode()) for i in range(500, 1_000)]
        assert publisher.publish(first, retain=True) == [True] * 500
        connection = publisher._connection
        assert publisher.publish(second, retain=True) == [True] * 500
        assert publisher._connection is connection  # no new CONNECT for the second batch
    finally:
        publisher.close()
    assert _read_back(mosquitto, f"{prefix}/+", 1_000) == dict(first + second)


class ReconnectableBroker(ScriptedBroker):
    """A ``ScriptedBroker`` that hangs up at ``close_at`` once, then takes a
    second connection and acknowledges everything on it."""

    def run(self) -> None:
        super().run()
        self.close_at = None
        super().run()


def test_a_bulk_publisher_sends_again_on_a_new_connection_what_a_lost_one_left_unconfirmed():
    broker = ReconnectableBroker(receive_maximum=2, close_at=4)
    broker.start()
    publisher = BulkPublisher(broker.endpoint(), timeout_s=5)
    try:
        confirmed = publisher.publish(_messages(10))
    finally:
        publisher.close()
    broker.join(5)
    assert confirmed == [True] * 10
    # t/4 reached the first connection unacknowledged, so it goes again: at least once, never guessed.
    assert [topic for topic, *_ in broker.published] == [f"t/{i}" for i in (0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9)]


def test_a_bulk_publisher_replaces_a_connection_left_idle_past_half_the_keepalive():
    broker = ScriptedBroker()
    broker.start()
    publisher = BulkPublisher(broker.endpoint(), keepalive_s=60, timeout_s=0.5)
    try:
        assert publisher.publish(_messages(1)) == [True]
        stale = publisher._connection
        publisher._used_at -= 31  # as if idle for 31 s
        with pytest.raises(MqttPublishError, match="no CONNACK"):
            publisher.publish(_messages(1))  # a new connection: the scripted broker answers only its first
        assert stale is not None and stale.sock.fileno() == -1  # closed, not reused
    finally:
        publisher.close()


def test_a_bulk_sender_publishes_batches_in_order_from_its_thread():
    broker = ScriptedBroker(receive_maximum=5)
    broker.start()
    sender = BulkSender(BulkPublisher(broker.endpoint(), timeout_s=5), batches_queued=2, what="acks")
    messages = _messages(30)
    for start in range(0, 30, 7):
        sender.send(messages[start : start + 7])
    sender.send([])  # nothing to send: not queued
    sender.close()
    broker.join(5)
    assert not sender.thread.is_alive()
    assert (sender.sent, sender.unconfirmed) == (30, 0)
    assert [(topic, payload) for topic, payload, _ in broker.published] == messages
    assert {retained for *_, retained in broker.published} == {False}


def test_a_bulk_sender_counts_and_drops_what_the_broker_never_confirmed(caplog):
    sender = BulkSender(BulkPublisher(mqtt_url_parse(f"mqtt://u:p@127.0.0.1:{free_port()}"), timeout_s=1), 2)
    sender.send(_messages(3))
    sender.send(_messages(2))
    sender.close()
    assert not sender.thread.is_alive()  # an absent broker does not stop the thread early or hang it
    assert (sender.sent, sender.unconfirmed) == (0, 5)
    assert "cannot reach the MQTT broker" in caplog.text


def test_packets_are_split_only_when_whole():
    packet = b"\x30" + varint(200) + b"x" * 200
    assert varint_read(packet, 1) == (200, 3)
    assert packet_split(packet, 0) == (0x30, 3, 203)
    assert packet_split(packet[:150], 0) is None  # body not all there
    assert packet_split(packet[:2], 0) is None  # length not all there
    assert varint_read(b"\xff\xff\xff\xff\x01", 0) is None  # longer than four bytes
    assert subscribe_packet(1, "a/b") == b"\x82\x09\x00\x01\x00\x00\x03a/b\x01"
