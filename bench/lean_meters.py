"""Simulated meters that leave the CPU to the backend under test.

In the field every meter is its own device; in ``bench/ingest.py`` a few
hundred of them share the two cores of this machine with Mosquitto, the
ingest and PostgreSQL. Through paho each simulated meter costs about 130 µs
of CPU per reading (its message objects, locks and network thread), more than
the ingest itself, so with paho meters the benchmark mostly measures the
load generator. These meters speak MQTT 5 directly instead, the way
``meters.mqtt_bulk`` publishes decisions: each still has its own TCP
connection, logs in with its own id and secret (so the broker's password file
and ACL apply), publishes its signed readings at QoS 1 with at most
``WINDOW`` awaiting their PUBACK (paho's ``max_inflight_messages`` in the paho
meters), subscribes to its ``ack`` topic at QoS 1 and PUBACKs every ack it
receives. A reading counts as published only when the broker's PUBACK says
so; a refusal (reason code >= 0x80) is counted, never hidden.

Spoken: CONNECT (keepalive off: the run is short and never idle), CONNACK,
SUBSCRIBE/SUBACK, PUBLISH QoS 1 both ways, PUBACK both ways, DISCONNECT.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field

from meters.mqtt import MqttEndpoint, MqttPublishError
from meters.mqtt_bulk import broker_connect, packet_split, publish_packet, subscribe_packet, varint_read

WINDOW = 100
READ_BYTES = 262_144
PUBACK, PUBLISH, DISCONNECT, SUBACK = 4, 3, 14, 9


class MeterLinkError(ConnectionError):
    """The broker refused or dropped a simulated meter."""


@dataclass
class MeterLink:
    """One simulated meter's connection and what it still has to say."""

    meter: str
    sock: socket.socket
    packets: list[bytes]
    sent: int = 0
    inflight: int = 0
    confirmed: int = 0
    refused: int = 0
    acks: int = 0
    accepted: int = 0
    out: bytearray = field(default_factory=bytearray)
    rx: bytearray = field(default_factory=bytearray)

    @classmethod
    def connect(
        cls, host: str, port: int, meter: str, secret: str, ack_topic: str | None, messages: list[tuple[str, bytes]]
    ) -> MeterLink:
        try:
            connection, _ = broker_connect(
                MqttEndpoint(host, port, meter, secret, False), meter, timeout_s=30, keepalive_s=0
            )
        except MqttPublishError as exc:
            raise MeterLinkError(f"{meter}: CONNACK refused ({exc})") from exc
        if ack_topic:
            connection.send(subscribe_packet(1, ack_topic))
            kind, body = next(connection.packets(time.monotonic() + connection.timeout_s))
            granted = body[-1] if body else 0x80
            if kind != SUBACK or granted != 1:
                connection.close()
                raise MeterLinkError(f"{meter}: SUBACK refused QoS 1 on {ack_topic} ({granted:#x})")
        connection.sock.setblocking(False)
        packets = [
            publish_packet(topic.encode(), payload, number % 65_535 + 1, False)
            for number, (topic, payload) in enumerate(messages)
        ]
        return cls(meter, connection.sock, packets, rx=bytearray(connection.buffer))

    def fill(self) -> None:
        """Queue readings until ``WINDOW`` await their PUBACK."""
        while self.inflight < WINDOW and self.sent < len(self.packets):
            self.out += self.packets[self.sent]
            self.sent += 1
            self.inflight += 1

    def flush(self) -> None:
        if self.out:
            try:
                written = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:written]

    def read(self) -> None:
        """Take what arrived: PUBACKs free the window, acks get their PUBACK."""
        try:
            data = self.sock.recv(READ_BYTES)
        except BlockingIOError:
            return
        if not data:
            raise MeterLinkError(f"{self.meter}: the broker closed the connection")
        self.rx += data
        at, rx = 0, self.rx
        while (parts := packet_split(rx, at)) is not None:
            first, start, end = parts
            kind = first >> 4
            if kind == PUBACK:
                self.inflight -= 1
                self.confirmed += 1
                if end - start > 2 and rx[start + 2] >= 0x80:
                    self.refused += 1
            elif kind == PUBLISH:
                topic_end = start + 2 + ((rx[start] << 8) | rx[start + 1])
                body_at = topic_end
                if (first >> 1) & 3:
                    self.out += bytes((0x40, 2, rx[topic_end], rx[topic_end + 1]))
                    body_at += 2
                properties = varint_read(rx, body_at)
                payload_at = properties[0] + properties[1] if properties else end
                self.acks += 1
                self.accepted += b'"accepted"' in rx[payload_at:end]
            elif kind == DISCONNECT:
                raise MeterLinkError(f"{self.meter}: the broker sent DISCONNECT ({bytes(rx[start:end]).hex()})")
            at = end
        del rx[:at]
        self.fill()

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


def links_run(links: list[MeterLink], acks_expected: int, publish_timeout_s: float, acks_timeout_s: float) -> float:
    """Publish every link's readings (within ``publish_timeout_s``), then go on
    reading until ``acks_expected`` acks arrived (within ``acks_timeout_s``
    more); returns the wall time the last PUBACK was seen."""
    selector = selectors.DefaultSelector()
    writing: dict[int, bool] = {}
    for link in links:
        link.fill()
        link.flush()
        writing[link.sock.fileno()] = bool(link.out)
        selector.register(link.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if link.out else 0), link)
    total = sum(len(link.packets) for link in links)
    deadline, last_puback, confirmed = time.monotonic() + publish_timeout_s, 0.0, 0
    while time.monotonic() < deadline:
        if confirmed < total:
            confirmed = sum(link.confirmed for link in links)
            if confirmed == total:
                last_puback = time.time()
                deadline = time.monotonic() + acks_timeout_s
        if confirmed == total and sum(link.acks for link in links) >= acks_expected:
            break
        for key, mask in selector.select(0.5):
            link = key.data
            if mask & selectors.EVENT_READ:
                link.read()
            link.flush()
            fd = link.sock.fileno()
            if writing[fd] != bool(link.out):
                writing[fd] = bool(link.out)
                selector.modify(link.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if link.out else 0), link)
    selector.close()
    if confirmed < total:
        raise MeterLinkError(f"only {confirmed:,} of {total:,} readings confirmed in {publish_timeout_s:.0f} s")
    return last_puback
