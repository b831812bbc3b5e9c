"""A paho client that reads its socket 64 KiB at a time.

paho 2.2 reads each packet with about four ``recv`` calls (the type byte, the
length bytes one by one, the body). Every call releases Python's GIL, and in
the ingest the main thread is busy verifying and storing the previous batch:
each time the network thread wants the GIL back it waits for the main thread's
switch interval, so it reads a handful of packets per batch instead of
thousands. Reading ahead makes that one system call (and one GIL hand-over)
per many packets.

``pending()`` tells paho's loop that bytes are already buffered, exactly as it
does for TLS sockets, so the loop never sleeps in ``select()`` on data it has
already read. Everything else goes straight to the real socket.

``ReadAheadClient`` adds two shortcuts for the ingest, which receives tens of
thousands of QoS 1 messages a second and acks each by hand:

- ``on_publish_received(topic, payload, mid, qos)``: when set, an MQTT v5 QoS 1
  PUBLISH is cut into its parts directly and handed over, instead of paho
  building an ``MQTTMessage`` (with its ``threading.Condition``), parsing the
  properties into objects and matching the topic against callback filters:
  about a third of paho's cost per message. Anything else (QoS 0 or 2, MQTT
  3.1.1, a malformed packet) takes paho's own path.
- ``ack_many(mids)``: the PUBACKs of a whole batch as one queued packet (one
  wake-up of the network thread, one ``send``) instead of one each.

``BatchInbox`` hands the received messages from the network thread to the
ingest's main loop a batch at a time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTTErrorCode

from .mqtt_bulk import varint_read

READ_AHEAD_BYTES = 65_536
# Packets read per wake-up of paho's loop before it sends what is queued (our
# PUBACKs) and checks the keepalive.
READ_PACKETS_PER_WAKE = 256


class ReadAheadSocket:
    """Wraps a connected (non-blocking) socket; serves small reads from one large one."""

    def __init__(self, sock: Any, chunk_bytes: int = READ_AHEAD_BYTES) -> None:
        self._sock = sock
        self._chunk_bytes = chunk_bytes
        self._buffer = b""
        self._offset = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; raises what the socket raises when nothing is
        buffered and nothing can be read (``BlockingIOError``), ``b""`` at EOF."""
        if self._offset >= len(self._buffer):
            data = self._sock.recv(max(size, self._chunk_bytes))
            if not data:
                return data
            self._buffer, self._offset = data, 0
        chunk = self._buffer[self._offset : self._offset + size]
        self._offset += len(chunk)
        return chunk

    def pending(self) -> int:
        """Bytes read but not yet handed to paho (plus what TLS holds decrypted)."""
        inner = getattr(self._sock, "pending", None)
        return len(self._buffer) - self._offset + (inner() if inner else 0)

    def send(self, data: bytes | bytearray) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._buffer, self._offset = b"", 0
        self._sock.close()


# (topic as bytes, payload, packet id, QoS), called on paho's network thread.
RawPublishCallback = Callable[[bytes, bytes, int, int], None]
PUBACK = 0x40


def publish_split(command: int, packet: bytes) -> tuple[bytes, int, bytes] | None:
    """An MQTT v5 QoS 1 PUBLISH's ``(topic, packet id, payload)``, its
    properties skipped; None for anything else or a packet too short to be
    one (paho's own parser then decides, and refuses it properly)."""
    if (command & 0xF6) != 0x32:  # PUBLISH, QoS 1 (any dup and retain flags)
        return None
    if len(packet) < 5:
        return None
    end = 2 + ((packet[0] << 8) | packet[1])
    if end + 3 > len(packet):
        return None
    mid = (packet[end] << 8) | packet[end + 1]
    properties = varint_read(packet, end + 2)  # their length
    if properties is None:
        return None
    length, at = properties
    if at + length > len(packet) or mid == 0:
        return None
    return bytes(packet[2:end]), mid, bytes(packet[at + length :])


def pubacks_packet(mids: Iterable[int]) -> bytes:
    """PUBACKs (success, the two-byte short form MQTT v5 allows) for ``mids``, back to back."""
    return b"".join(bytes((PUBACK, 2, mid >> 8, mid & 0xFF)) for mid in mids)


class ReadAheadClient(mqtt.Client):
    """``paho.mqtt.client.Client`` whose every connection reads ahead, with the
    ingest's two shortcuts (see the module docstring).

    Overrides paho's ``_create_socket`` and ``_handle_publish`` and queues on
    ``_packet_queue`` (paho-mqtt is pinned to 2.2.0 in requirements.txt; its
    websocket transport wraps the socket the same way)."""

    on_publish_received: RawPublishCallback | None = None

    def _create_socket(self) -> Any:
        return ReadAheadSocket(super()._create_socket())

    def _handle_publish(self) -> MQTTErrorCode:
        callback = self.on_publish_received
        if callback is None or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        parts = publish_split(self._in_packet["command"], self._in_packet["packet"])
        if parts is None:
            return super()._handle_publish()
        topic, mid, payload = parts
        # With manual_ack paho sends nothing for a QoS 1 message by itself either.
        callback(topic, payload, mid, 1)
        if not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read up to ``READ_PACKETS_PER_WAKE`` packets per wake-up of the
        network loop. paho reads only as many as it has messages in flight
        (ignoring ``max_packets``): with the ingest's acks to meters on
        another connection that is one, and every reading would cost a
        ``select()`` and a pass through paho's loop."""
        if self.on_publish_received is None:
            return super().loop_read(max_packets)
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        for _ in range(max(READ_PACKETS_PER_WAKE, len(self._out_messages) + len(self._in_messages))):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Sequence[int]) -> MQTTErrorCode:
        """PUBACK every QoS 1 message in ``mids`` (manual ack), in one packet write."""
        if not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._packet_queue(PUBACK, pubacks_packet(mids), 0, 0)


T = TypeVar("T")


class BatchInbox(Generic[T]):
    """A bounded FIFO from one producer thread to one consumer that takes a
    batch at a time.

    ``queue.Queue`` takes a lock and signals the other side for every item: with
    a full queue, each item the consumer takes wakes the blocked producer to put
    one more, and the two threads hand Python's GIL back and forth per message.
    Here the consumer takes up to a batch under one lock and is woken only when
    what it waits for is there (a first item, then a full batch); a producer
    blocked on a full inbox is woken only once ``room`` places are free.
    """

    def __init__(self, maxsize: int, room: int) -> None:
        if maxsize < 1 or room < 1:
            raise ValueError("an inbox holds at least one item and frees at least one place")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._resume_at = maxsize - min(room, maxsize)  # a blocked producer goes on at this fill
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._writable = threading.Condition(self._lock)
        self._wanted = 0  # how many items the waiting consumer needs (0: not waiting)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float) -> bool:
        """Append ``item``; False if the inbox stayed full for ``timeout`` seconds."""
        with self._lock:
            if len(self._items) >= self._maxsize and not self._writable.wait_for(
                lambda: len(self._items) <= self._resume_at, timeout
            ):
                return False
            self._items.append(item)
            # A batch larger than the inbox is woken when the inbox is full.
            if self._wanted and len(self._items) >= min(self._wanted, self._maxsize):
                self._readable.notify()
        return True

    def take(self, most: int, first_timeout: float, fill_timeout: float) -> list[T]:
        """Up to ``most`` items, oldest first: waits up to ``first_timeout``
        seconds for the first (``[]`` if none came), then up to ``fill_timeout``
        for the batch to fill."""
        with self._lock:
            if not self._wait(1, first_timeout):
                return []
            self._wait(most, fill_timeout)
            batch = [self._items.popleft() for _ in range(min(most, len(self._items)))]
            if len(self._items) <= self._resume_at:
                self._writable.notify()
            return batch

    def _wait(self, count: int, timeout: float) -> bool:
        if len(self._items) >= count:
            return True
        self._wanted = count
        enough = min(count, self._maxsize)
        try:
            return self._readable.wait_for(lambda: len(self._items) >= enough, timeout)
        finally:
            self._wanted = 0
