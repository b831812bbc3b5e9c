"""The read-ahead socket paho's ingest client uses: small reads served from one
large read, ``pending()`` for paho's loop, EOF and "nothing yet" passed through."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from meters.mqtt_readahead import (
    READ_PACKETS_PER_WAKE,
    BatchInbox,
    ReadAheadClient,
    ReadAheadSocket,
    pubacks_packet,
    publish_split,
)


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    right.setblocking(False)
    yield left, ReadAheadSocket(right, chunk_bytes=1024)
    left.close()
    right.close()


def test_small_reads_are_served_from_one_system_call(pair):
    peer, wrapped = pair
    peer.sendall(b"\x30\x05hello" + b"\x40\x02\x00\x01")

    assert wrapped.recv(1) == b"\x30"
    assert wrapped.pending() == 10
    peer.sendall(b"later")  # not read until the buffer is used up
    assert wrapped.recv(1) == b"\x05"
    assert wrapped.recv(5) == b"hello"
    assert wrapped.recv(100) == b"\x40\x02\x00\x01"  # never more than was buffered
    assert wrapped.pending() == 0
    assert wrapped.recv(100) == b"later"


def test_nothing_to_read_raises_like_the_socket_and_eof_is_empty(pair):
    peer, wrapped = pair

    with pytest.raises(BlockingIOError):
        wrapped.recv(1)
    peer.shutdown(socket.SHUT_WR)
    assert wrapped.recv(1) == b""


def test_writes_and_the_descriptor_go_to_the_socket(pair):
    peer, wrapped = pair

    assert wrapped.send(b"ping") == 4
    assert peer.recv(4) == b"ping"
    assert wrapped.fileno() == wrapped._sock.fileno()


# -- the ingest's shortcuts: PUBLISH cut directly, PUBACKs in one write -----------------

QOS1 = 0x32


def _publish_body(topic: bytes, mid: int, properties: bytes, payload: bytes) -> bytes:
    return (
        len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + bytes([len(properties)]) + properties + payload
    )


def test_a_qos_1_publish_is_cut_into_topic_packet_id_and_payload():
    body = _publish_body(b"grid/g/meters/m/readings", 0x1234, b"", b'{"v":1}')
    assert publish_split(QOS1, body) == (b"grid/g/meters/m/readings", 0x1234, b'{"v":1}')
    assert publish_split(QOS1 | 0x08 | 0x01, body) == (b"grid/g/meters/m/readings", 0x1234, b'{"v":1}')  # dup, retain


def test_properties_are_skipped_not_read_as_payload():
    properties = b"\x01\x01" + b"\x0b\x05"  # payload format indicator 1, subscription identifier 5
    body = _publish_body(b"t", 7, properties, b"data")
    assert publish_split(QOS1, body) == (b"t", 7, b"data")


@pytest.mark.parametrize(
    ("command", "body"),
    [
        (0x30, b"\x00\x01t\x00data"),  # QoS 0: no packet id, paho's path
        (0x34, _publish_body(b"t", 1, b"", b"x")),  # QoS 2
        (QOS1, b"\x00\x09t\x00\x01\x00"),  # topic longer than the packet
        (QOS1, _publish_body(b"t", 1, b"", b"")[:-1] + b"\x05"),  # properties longer than the packet
        (QOS1, _publish_body(b"t", 0, b"", b"x")),  # packet id 0 is not allowed
        (QOS1, b"\x00"),
    ],
)
def test_anything_else_is_left_to_paho(command, body):
    assert publish_split(command, body) is None


def test_pubacks_for_a_batch_are_one_run_of_short_packets():
    assert pubacks_packet([1, 0x0102, 65_535]) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff"
    assert pubacks_packet([]) == b""


def _client(manual_ack: bool) -> tuple[ReadAheadClient, list]:
    client = ReadAheadClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    seen: list = []
    client.on_publish_received = lambda *args: seen.append(args)
    client.on_message = lambda *args: seen.append(("paho", args[2].topic, args[2].payload))
    return client, seen


def test_the_client_hands_a_qos_1_publish_over_and_acks_only_when_told():
    client, seen = _client(manual_ack=True)
    client._in_packet = {"command": QOS1, "packet": _publish_body(b"a/b", 9, b"", b"hi")}
    client._handle_publish()
    assert seen == [(b"a/b", b"hi", 9, 1)]
    assert not client._out_packet  # manual ack: nothing sent yet
    client.ack_many([9, 10])
    assert [packet["packet"] for packet in client._out_packet] == [b"\x40\x02\x00\x09\x40\x02\x00\x0a"]


def test_without_the_shortcut_or_for_qos_0_paho_builds_the_message():
    client, seen = _client(manual_ack=True)
    client._in_packet = {"command": 0x30, "packet": b"\x00\x03a/b\x00hi"}
    client._handle_publish()
    client.on_publish_received = None
    client._in_packet = {"command": QOS1, "packet": _publish_body(b"a/b", 9, b"", b"hi")}
    client._handle_publish()
    assert seen == [("paho", "a/b", b"hi"), ("paho", "a/b", b"hi")]


def test_one_wake_up_of_the_network_loop_reads_many_packets(pair):
    peer, wrapped = pair
    client, seen = _client(manual_ack=True)
    client._sock = wrapped
    packets = []
    for mid in range(1, 301):
        body = _publish_body(b"a/b", mid, b"", b"x")
        packets.append(bytes([QOS1, len(body)]) + body)
    peer.sendall(b"".join(packets))

    client.loop_read()  # paho itself would read one: it has no message of its own in flight
    assert len(seen) == READ_PACKETS_PER_WAKE
    client.loop_read()
    assert [mid for _, _, mid, _ in seen] == list(range(1, 301))


# -- the inbox between the network thread and the main loop ------------------------------


def test_the_inbox_hands_over_a_batch_in_order_and_waits_no_longer_than_told():
    inbox: BatchInbox[int] = BatchInbox(maxsize=10, room=4)
    assert inbox.take(5, first_timeout=0.01, fill_timeout=1) == []  # nothing came
    for item in range(7):
        assert inbox.put(item, timeout=0)
    assert inbox.take(5, first_timeout=1, fill_timeout=1) == [0, 1, 2, 3, 4]
    started = time.monotonic()
    assert inbox.take(5, first_timeout=1, fill_timeout=0.05) == [5, 6]  # a partial batch after the fill wait
    assert time.monotonic() - started < 0.5
    assert len(inbox) == 0


def test_a_full_inbox_refuses_and_a_blocked_producer_goes_on_once_a_batch_is_taken():
    inbox: BatchInbox[int] = BatchInbox(maxsize=4, room=2)
    for item in range(4):
        assert inbox.put(item, timeout=0)
    assert not inbox.put(99, timeout=0.01)  # full: refused, not dropped silently
    put: list[bool] = []
    producer = threading.Thread(target=lambda: put.append(inbox.put(4, timeout=5)))
    producer.start()
    time.sleep(0.05)
    assert put == []  # still blocked
    assert inbox.take(1, first_timeout=0, fill_timeout=0) == [0]
    time.sleep(0.05)
    assert put == []  # one free place is less than the room it waits for
    assert inbox.take(1, first_timeout=0, fill_timeout=0) == [1]
    producer.join(5)
    assert put == [True]
    assert inbox.take(10, first_timeout=0, fill_timeout=0) == [2, 3, 4]


def test_a_waiting_consumer_is_woken_by_a_full_batch_before_its_fill_wait_ends():
    inbox: BatchInbox[int] = BatchInbox(maxsize=100, room=10)
    inbox.put(0, timeout=0)

    def produce() -> None:
        time.sleep(0.05)
        for item in range(1, 10):
            inbox.put(item, timeout=1)

    threading.Thread(target=produce).start()
    started = time.monotonic()
    assert inbox.take(10, first_timeout=1, fill_timeout=10) == list(range(10))
    assert time.monotonic() - started < 5
