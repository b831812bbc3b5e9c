"""The platform's outbound MQTT: ``mqtt_publish(topic, payload)``.

Two publishers, chosen by ``settings.MQTT_PUBLISHER``:

- ``"paho"`` (the default when ``MQTT_URL`` is set): one paho-mqtt 2.x client
  per process, MQTT v5, connected lazily with the backend's credentials from
  ``MQTT_URL``, its network loop in a background thread (``loop_start``) that
  reconnects by itself. A QoS 1 publish waits for the broker's PUBACK and
  raises ``MqttPublishError`` on a timeout or a refusal (e.g. reason code 135,
  not authorized): a call that returns means the broker has the message.
- ``"memory"``: an in-process recorder for unit tests and the embedded demo.
  It keeps every message and the retained one per topic for inspection, and
  its ``PublishResult.broker`` is ``False``: nothing reached a broker. It is
  never a fallback for a failing broker.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


class MqttPublishError(RuntimeError):
    """The broker did not confirm a publish (down, timed out, or refused it)."""


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """What ``MQTT_URL`` says: where the broker is and who the backend is."""

    host: str
    port: int
    username: str
    password: str
    tls: bool


def mqtt_url_parse(url: str) -> MqttEndpoint:
    """Parse ``mqtt://user:pass@host:port`` (``mqtts://`` for TLS; default ports
    1883/8883; user and password may be percent-encoded). Raises ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts"}:
        raise ValueError(f"MQTT_URL must start with mqtt:// or mqtts://, got {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"MQTT_URL has a bad port: {exc}") from exc
    if not parts.hostname:
        raise ValueError("MQTT_URL has no host")
    tls = parts.scheme == "mqtts"
    return MqttEndpoint(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        tls=tls,
    )


def payload_encode(payload: dict[str, Any]) -> bytes:
    """The JSON bytes sent on the wire (keys sorted, UTF-8, no NaN)."""
    if not isinstance(payload, dict):
        raise TypeError(f"an MQTT payload is a JSON object (dict), got {type(payload).__name__}")
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class PublishResult:
    topic: str
    broker: bool  # True only when a broker confirmed it (PUBACK for QoS 1)


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> PublishResult: ...


@dataclass
class MemoryPublisher:
    """Records what would have been published: ``messages`` in order and the
    last retained message per topic in ``retained``. Thread-safe."""

    messages: list[RecordedMessage] = field(default_factory=list)
    retained: dict[str, RecordedMessage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> PublishResult:
        message = RecordedMessage(topic, payload, qos, retain)
        with self._lock:
            self.messages.append(message)
            if retain:
                self.retained[topic] = message
        return PublishResult(topic, broker=False)

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1, retain: bool = False) -> list[bool]:
        """Record each ``(topic, payload)``; all ``True`` (recorded, not brokered)."""
        for topic, payload in messages:
            self.publish(topic, payload, qos, retain)
        return [True] * len(messages)

    def on_topic(self, topic: str) -> list[RecordedMessage]:
        with self._lock:
            return [message for message in self.messages if message.topic == topic]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.retained.clear()


class PahoPublisher:
    """One lazily connected paho client (MQTT v5) for this process."""

    INFLIGHT = 500
    # More outstanding messages than this and paho's 16-bit message ids would
    # wrap onto ones still waiting for their PUBACK.
    WINDOW = 10_000

    def __init__(self, endpoint: MqttEndpoint, *, timeout_s: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = 0
        self._connected = threading.Event()  # set while logged in
        self._answered = threading.Event()  # the first CONNACK arrived
        self._connack: list[int] = []
        self._puback: dict[int, int] = {}  # mid -> PUBACK reason code

    def _client_get(self) -> Any:
        # A forked process (a Celery worker) must not share its parent's socket.
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._connect()
                self._pid = os.getpid()
            return self._client

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client_id = f"commonwatt-pub-{socket.gethostname()[:20]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if self.endpoint.username:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        # publish_many keeps this many QoS 1 messages awaiting PUBACK; keep it
        # within the broker's max_inflight_messages (1000 in our config).
        client.max_inflight_messages_set(self.INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._connected.clear()
        self._answered.clear()
        self._connack.clear()
        try:
            client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        except OSError as exc:
            raise MqttPublishError(f"cannot reach the MQTT broker at {self._where()}: {exc}") from exc
        client.loop_start()
        if not self._answered.wait(self.timeout_s) or self._connack[-1] != 0:
            client.loop_stop()
            client.disconnect()
            why = f"reason code {self._connack[-1]}" if self._connack else f"no CONNACK within {self.timeout_s} s"
            raise MqttPublishError(f"MQTT broker at {self._where()} refused the backend login: {why}")
        return client

    def _where(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connack.append(reason_code.value)
        self._answered.set()
        if reason_code.value == 0:
            self._connected.set()
        else:
            logger.error("MQTT publisher login refused: %s", reason_code)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        if not reason_code.is_failure and self._client is None:
            return  # close() asked for it
        logger.warning("MQTT publisher disconnected (%s); paho reconnects", reason_code)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._puback[mid] = reason_code.value

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> PublishResult:
        client = self._client_get()
        # While paho reconnects, wait for it rather than queue blindly: a
        # publish made while disconnected fails at once yet stays queued in
        # paho and goes out after the reconnect (receivers must be idempotent;
        # decisions and acks carry a seq for that).
        if not self._connected.wait(self.timeout_s):
            raise MqttPublishError(f"not connected to the MQTT broker at {self._where()} within {self.timeout_s} s")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return PublishResult(topic, broker=False)  # QoS 0: nobody confirms it
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise MqttPublishError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise MqttPublishError(f"no PUBACK from {self._where()} for {topic} within {self.timeout_s} s")
        code = self._puback.pop(info.mid, 0)
        if code >= 0x80:
            raise MqttPublishError(f"broker refused the publish to {topic}: reason code {code}")
        return PublishResult(topic, broker=True)

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1, retain: bool = False) -> list[bool]:
        """Publish ``(topic, payload)`` pairs with many awaiting PUBACK at once;
        ``True`` where the broker acknowledged the message (QoS 0: never).

        All ``False`` when no connection comes within the timeout; raises
        ``MqttPublishError`` only when the first connection cannot be made.
        """
        client = self._client_get()
        confirmed: list[bool] = []
        for start in range(0, len(messages), self.WINDOW):
            window = messages[start : start + self.WINDOW]
            if not self._connected.wait(self.timeout_s):
                logger.warning("MQTT broker at %s unreachable: %d messages not published", self._where(), len(window))
                confirmed += [False] * len(window)
                continue
            infos = [client.publish(topic, payload, qos=qos, retain=retain) for topic, payload in window]
            # The whole window shares one deadline, stretched for its size.
            deadline = time.monotonic() + self.timeout_s + len(window) / 1000
            confirmed += [qos > 0 and self._acknowledged(info, deadline) for info in infos]
        return confirmed

    def _acknowledged(self, info: Any, deadline: float) -> bool:
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            published = info.is_published()
        except (RuntimeError, ValueError):
            published = False
        code = self._puback.pop(info.mid, None)
        return published and code is not None and code < 0x80

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                client.disconnect()
                client.loop_stop()


MEMORY = MemoryPublisher()
_paho: dict[tuple[str, float], PahoPublisher] = {}
_paho_lock = threading.Lock()


def memory_publisher() -> MemoryPublisher:
    """The process-wide in-memory recorder (what ``MQTT_PUBLISHER="memory"`` uses)."""
    return MEMORY


def publishers_close() -> None:
    """Disconnect every paho publisher of this process (tests, shutdown)."""
    with _paho_lock:
        for publisher in _paho.values():
            publisher.close()
        _paho.clear()


def publisher_get() -> Publisher:
    """The publisher that ``settings.MQTT_PUBLISHER`` names."""
    kind = settings.MQTT_PUBLISHER
    if kind == "memory":
        return MEMORY
    if kind != "paho":
        raise ImproperlyConfigured(f"MQTT_PUBLISHER must be 'paho' or 'memory', got {kind!r}")
    if not settings.MQTT_URL:
        raise ImproperlyConfigured("MQTT_PUBLISHER='paho' needs MQTT_URL (mqtt://user:pass@host:port)")
    key = (settings.MQTT_URL, float(settings.MQTT_PUBLISH_TIMEOUT_S))
    with _paho_lock:
        if key not in _paho:
            _paho[key] = PahoPublisher(mqtt_url_parse(key[0]), timeout_s=key[1])
        return _paho[key]


def mqtt_publish(topic: str, payload: dict[str, Any], *, qos: int = 1, retain: bool = False) -> PublishResult:
    """Publish ``payload`` as JSON to ``topic``. With QoS 1 on a real broker this
    returns only once the broker acknowledged it; otherwise ``MqttPublishError``.
    A bad topic, QoS or payload raises ``ValueError``/``TypeError`` first."""
    if not topic or any(char in topic for char in "+#\0"):
        raise ValueError(f"not a topic to publish to: {topic!r}")
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, got {qos!r}")
    return publisher_get().publish(topic, payload_encode(payload), qos, retain)
