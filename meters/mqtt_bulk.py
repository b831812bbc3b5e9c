"""Publish many QoS 1 messages fast: one short MQTT 5 connection, a window of
PUBLISH packets awaiting their PUBACK, nothing else.

Why not paho: paho-mqtt spends about 100 µs of CPU per QoS 1 message in
Python (message objects, locks, a network thread), so the decisions after one
settlement of 100,000 meters would take 10 s of CPU to publish. Building the
PUBLISH packets directly and reading the PUBACKs from one socket costs a few µs
each; the broker stays the limit. Everything else (subscriptions, the ingest,
single decisions) keeps using paho through ``meters.mqtt``.

Only what publishing needs is spoken: CONNECT (clean start, username and
password from ``MQTT_URL``, TLS for ``mqtts://``), CONNACK (its Receive
Maximum bounds the window; Maximum QoS, Retain Available and Maximum Packet
Size are honoured), PUBLISH QoS 1, PUBACK (a reason code >= 0x80 is a refusal,
e.g. 0x87 not authorized), DISCONNECT. A message counts as delivered only when
its PUBACK says so; a lost connection or a silent broker leaves the rest
unconfirmed, never guessed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

from .mqtt import MqttEndpoint, MqttPublishError

logger = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK, PINGRESP, DISCONNECT = 1, 2, 3, 4, 13, 14
DEFAULT_WINDOW = 1000
# CONNACK property id -> size in bytes (-1: a 2-byte-length string or binary,
# -2: a string pair); enough to walk past the ones we do not use.
_PROPERTY_SIZES = {
    0x11: 4, 0x12: -1, 0x13: 2, 0x15: -1, 0x16: -1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2, 0x22: 2,
    0x24: 1, 0x25: 1, 0x26: -2, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip


def varint(value: int) -> bytes:
    """MQTT's Variable Byte Integer (0 to 268,435,455)."""
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"not encodable as an MQTT variable byte integer: {value}")
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def varint_read(buffer: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """The Variable Byte Integer at ``at``: ``(value, position after it)``, or
    None while it is not all in ``buffer`` (or is longer than four bytes)."""
    value, shift = 0, 0
    while at < len(buffer) and shift <= 21:
        byte = buffer[at]
        value |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            return value, at
    return None


def packet_split(buffer: bytes | bytearray, at: int) -> tuple[int, int, int] | None:
    """``(first byte, body start, body end)`` of the packet at ``at``, or None
    while it is not all in ``buffer`` yet."""
    length = varint_read(buffer, at + 1)
    if length is None or length[1] + length[0] > len(buffer):
        return None
    return buffer[at], length[1], length[1] + length[0]


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, username: str, password: str, keepalive_s: int = 60) -> bytes:
    """CONNECT, MQTT 5, clean start, no properties."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    variable = b"\x00\x04MQTT\x05" + bytes([flags]) + struct.pack("!H", keepalive_s) + b"\x00"
    payload = _string(client_id) + (_string(username) if username else b"") + (_string(password) if password else b"")
    return b"\x10" + varint(len(variable) + len(payload)) + variable + payload


def publish_packet(topic: bytes, payload: bytes, packet_id: int, retain: bool) -> bytes:
    """PUBLISH with QoS 1 and no properties."""
    variable = struct.pack("!H", len(topic)) + topic + struct.pack("!HB", packet_id, 0)
    return bytes([0x32 | int(retain)]) + varint(len(variable) + len(payload)) + variable + payload


def subscribe_packet(packet_id: int, topic: str) -> bytes:
    """SUBSCRIBE to one topic filter at QoS 1, no properties."""
    variable = struct.pack("!HB", packet_id, 0)
    payload = _string(topic) + b"\x01"
    return b"\x82" + varint(len(variable) + len(payload)) + variable + payload


class _Limits:
    """What the broker's CONNACK allows."""

    def __init__(self, properties: bytes) -> None:
        self.receive_maximum = 65_535
        self.maximum_packet_size = 268_435_460
        self.maximum_qos = 2
        self.retain_available = True
        at = 0
        while at < len(properties):
            prop, at = properties[at], at + 1
            size = _PROPERTY_SIZES.get(prop)
            if size is None:
                logger.warning("unknown CONNACK property 0x%02x: keeping the defaults for the rest", prop)
                return
            if size > 0:
                value = int.from_bytes(properties[at : at + size], "big")
                self._set(prop, value)
                at += size
            else:
                for _ in range(-size):
                    at += 2 + int.from_bytes(properties[at : at + 2], "big")

    def _set(self, prop: int, value: int) -> None:
        if prop == 0x21:
            self.receive_maximum = value
        elif prop == 0x27:
            self.maximum_packet_size = value
        elif prop == 0x24:
            self.maximum_qos = value
        elif prop == 0x25:
            self.retain_available = bool(value)


class _Connection:
    """One socket to the broker and a reader of whole packets from it."""

    def __init__(self, endpoint: MqttEndpoint, timeout_s: float) -> None:
        self.where = f"{endpoint.host}:{endpoint.port}"
        self.timeout_s = timeout_s
        self.buffer = b""
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s)
        except OSError as exc:
            raise MqttPublishError(f"cannot reach the MQTT broker at {self.where}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=endpoint.host)
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def packets(self, deadline: float) -> Iterator[tuple[int, bytes]]:
        """Whatever whole packets arrive before ``deadline`` (at least one, or
        ``TimeoutError``); ``ConnectionError`` when the broker closed the socket."""
        while True:
            parsed = list(self._parse())
            if parsed:
                yield from parsed
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the MQTT broker at {self.where} did not answer in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise TimeoutError(f"the MQTT broker at {self.where} did not answer in time") from None
            if not data:
                raise ConnectionError(f"the MQTT broker at {self.where} closed the connection")
            self.buffer += data

    def _parse(self) -> Iterator[tuple[int, bytes]]:
        buffer, at = self.buffer, 0
        while (parts := packet_split(buffer, at)) is not None:
            first, start, end = parts
            yield first >> 4, buffer[start:end]
            at = end
        self.buffer = buffer[at:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(b"\xe0\x00")  # DISCONNECT, normal
        self.sock.close()


def _login(connection: _Connection, endpoint: MqttEndpoint, client_id: str, keepalive_s: int = 60) -> _Limits:
    connection.send(connect_packet(client_id, endpoint.username, endpoint.password, keepalive_s))
    deadline = time.monotonic() + connection.timeout_s
    try:
        kind, body = next(connection.packets(deadline))
    except (TimeoutError, ConnectionError) as exc:
        raise MqttPublishError(f"no CONNACK from {connection.where}: {exc}") from exc
    if kind != CONNACK or len(body) < 2:
        raise MqttPublishError(f"the broker at {connection.where} answered CONNECT with packet type {kind}")
    if body[1] != 0:
        raise MqttPublishError(f"the broker at {connection.where} refused the login: reason code {body[1]}")
    length, index = varint_read(body, 2) or (0, len(body))
    limits = _Limits(body[index : index + length])
    if limits.maximum_qos < 1 or not limits.retain_available:
        raise MqttPublishError(f"the broker at {connection.where} takes no QoS 1 or no retained messages")
    return limits


def broker_connect(
    endpoint: MqttEndpoint, client_id: str = "", *, timeout_s: float = 10.0, keepalive_s: int = 60
) -> tuple[_Connection, _Limits]:
    """A new connection to the broker, logged in (a fresh client id unless
    ``client_id``). Raises ``MqttPublishError`` when the broker cannot be
    reached or refuses the login; nothing stays open then."""
    client_id = client_id or f"commonwatt-bulk-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    connection = _Connection(endpoint, timeout_s)
    try:
        return connection, _login(connection, endpoint, client_id, keepalive_s)
    except BaseException:
        connection.close()
        raise


def _topics(messages: Sequence[tuple[str, bytes]]) -> list[bytes]:
    topics = [topic.encode() for topic, _ in messages]
    if any(not topic or b"+" in topic or b"#" in topic or b"\0" in topic for topic in topics):
        raise ValueError("a topic to publish to is non-empty and has no wildcard or NUL")
    return topics


def mqtt_publish_bulk(
    messages: Sequence[tuple[str, bytes]],
    endpoint: MqttEndpoint,
    *,
    retain: bool = True,
    timeout_s: float = 10.0,
    window: int = DEFAULT_WINDOW,
) -> list[bool]:
    """Publish each ``(topic, payload)`` with QoS 1 on one new connection.

    Up to ``window`` messages (and never more than the broker's Receive
    Maximum) await their PUBACK at once. Returns, per message, ``True`` when
    the broker acknowledged it with a success reason code. A connection lost
    midway, or ``timeout_s`` without any answer, leaves the rest ``False``.
    Raises ``MqttPublishError`` when the broker cannot be reached or refuses
    the login (nothing was published then); ``ValueError`` for a bad topic.
    """
    topics = _topics(messages)
    connection, limits = broker_connect(endpoint, timeout_s=timeout_s)
    try:
        return _publish_all(connection, limits, topics, [p for _, p in messages], retain, min(window, 65_535))
    finally:
        connection.close()


def _publish_all(
    connection: _Connection, limits: _Limits, topics: list[bytes], payloads: list[bytes], retain: bool, window: int
) -> list[bool]:
    confirmed = [False] * len(topics)
    window = max(1, min(window, limits.receive_maximum))
    in_flight: dict[int, int] = {}  # packet id -> message index
    next_message, packet_id = 0, 0
    while next_message < len(topics) or in_flight:
        outgoing = []
        while next_message < len(topics) and len(in_flight) < window:
            packet_id = packet_id % 65_535 + 1
            while packet_id in in_flight:
                packet_id = packet_id % 65_535 + 1
            packet = publish_packet(topics[next_message], payloads[next_message], packet_id, retain)
            if len(packet) <= limits.maximum_packet_size:
                in_flight[packet_id] = next_message
                outgoing.append(packet)
            next_message += 1
        try:
            if outgoing:
                connection.send(b"".join(outgoing))
            if in_flight:
                _read_acks(connection, in_flight, confirmed)
        except (OSError, TimeoutError, ConnectionError) as exc:
            logger.warning("bulk publish stopped, %d messages unconfirmed: %s", len(topics) - sum(confirmed), exc)
            break
    return confirmed


def _read_acks(connection: _Connection, in_flight: dict[int, int], confirmed: list[bool]) -> None:
    for kind, body in connection.packets(time.monotonic() + connection.timeout_s):
        if kind == PUBACK and len(body) >= 2:
            index = in_flight.pop(int.from_bytes(body[:2], "big"), None)
            if index is not None:
                confirmed[index] = len(body) == 2 or body[2] < 0x80
        elif kind == DISCONNECT:
            reason = body[0] if body else 0
            raise ConnectionError(f"the broker at {connection.where} disconnected us: reason code {reason}")


class BulkPublisher:
    """``mqtt_publish_bulk`` over one lasting connection, for a caller that
    publishes batch after batch (the ingest's acks to meters): no CONNECT and
    login per batch.

    The connection opens on the first ``publish`` and again after it was lost;
    one left idle for half the keepalive is replaced before use rather than
    pinged (the broker drops it after 1.5 keepalives of silence). Not thread-safe:
    one thread publishes.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        timeout_s: float = 10.0,
        window: int = DEFAULT_WINDOW,
        keepalive_s: int = 60,
    ) -> None:
        self.endpoint, self.timeout_s, self.window, self.keepalive_s = endpoint, timeout_s, window, keepalive_s
        self._connection: _Connection | None = None
        self._limits: _Limits | None = None
        self._used_at = 0.0

    def publish(self, messages: Sequence[tuple[str, bytes]], *, retain: bool = False) -> list[bool]:
        """Publish each ``(topic, payload)`` with QoS 1; per message, ``True``
        once the broker acknowledged it. What a lost connection left
        unconfirmed is tried once more on a new connection. Raises
        ``MqttPublishError`` when the broker cannot be reached or refuses the
        login; ``ValueError`` for a bad topic (nothing published then)."""
        topics = _topics(messages)
        payloads = [payload for _, payload in messages]
        confirmed = self._attempt(topics, payloads, retain)
        missing = [index for index, done in enumerate(confirmed) if not done]
        if missing and self._connection is None:  # lost midway: once more, on a new connection
            again = self._attempt([topics[i] for i in missing], [payloads[i] for i in missing], retain)
            for index, done in zip(missing, again, strict=True):
                confirmed[index] = done
        return confirmed

    def _attempt(self, topics: list[bytes], payloads: list[bytes], retain: bool) -> list[bool]:
        connection, limits = self._connect()
        confirmed = _publish_all(connection, limits, topics, payloads, retain, min(self.window, 65_535))
        if not all(confirmed):
            self.close()  # lost, silent or refusing: start afresh next time
        else:
            self._used_at = time.monotonic()
        return confirmed

    def _connect(self) -> tuple[_Connection, _Limits]:
        if self._connection is not None and time.monotonic() - self._used_at > self.keepalive_s / 2:
            self.close()
        if self._connection is None or self._limits is None:
            self._connection, self._limits = broker_connect(
                self.endpoint, timeout_s=self.timeout_s, keepalive_s=self.keepalive_s
            )
            self._used_at = time.monotonic()
        return self._connection, self._limits

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._limits = None


class BulkSender:
    """Publishes batches of QoS 1 messages from a thread of its own over a
    ``BulkPublisher``, so the caller goes on while the broker confirms them.

    For messages whose receiver recovers from a loss (the ingest's acks to
    meters: a meter holds an unacked reading and sends it again): what the
    broker did not confirm is logged, counted in ``unconfirmed`` and dropped.
    Batches queued meanwhile go out together, in order.
    """

    def __init__(self, publisher: BulkPublisher, batches_queued: int, what: str = "messages") -> None:
        self.publisher, self.what = publisher, what
        self.inbox: queue.Queue[list[tuple[str, bytes]] | None] = queue.Queue(maxsize=batches_queued)
        self.sent = self.unconfirmed = 0
        self.thread = threading.Thread(target=self._run, name=f"bulk-sender ({what})", daemon=True)
        self.thread.start()

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        """Queue ``(topic, payload)`` messages; blocks while the sender is ``batches_queued`` behind."""
        if messages:
            self.inbox.put(messages)

    def close(self, timeout_s: float = 10.0) -> None:
        """Publish what is queued (within ``timeout_s``), then hang up."""
        self.inbox.put(None)
        self.thread.join(timeout_s)

    def _run(self) -> None:
        try:
            closing = False
            while not closing:
                messages = self.inbox.get()
                if messages is None:
                    return
                with contextlib.suppress(queue.Empty):
                    while len(messages) < 4 * self.publisher.window:
                        more = self.inbox.get_nowait()
                        if more is None:
                            closing = True
                            break
                        messages = messages + more
                self._publish(messages)
        finally:
            self.publisher.close()

    def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        try:
            confirmed = self.publisher.publish(messages)
        except (MqttPublishError, OSError, ValueError) as exc:
            confirmed = [False] * len(messages)
            logger.warning("%s not published (%s)", self.what, exc)
        except Exception:  # a bug here must not stop the thread the caller waits on
            confirmed = [False] * len(messages)
            logger.exception("publishing %s failed", self.what)
            self.publisher.close()
        missing = len(confirmed) - sum(confirmed)
        self.sent += len(confirmed) - missing
        if missing:
            self.unconfirmed += missing
            logger.warning("%d of %d %s unconfirmed by the broker, dropped", missing, len(messages), self.what)
