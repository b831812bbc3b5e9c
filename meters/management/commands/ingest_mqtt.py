"""``manage.py ingest_mqtt``: take meter readings from Mosquitto into the database.

The edge only: it connects (paho-mqtt 2, MQTT v5, the backend's credentials
from ``MQTT_URL``), subscribes with QoS 1 to ``grid/+/meters/+/readings`` (or,
with ``--grid``, to only those grids' readings: one ingest per shard of grids
scales out while each meter's readings still go through one process, in order)
and hands batches of messages to ``meters.ingest.readings_record``.

Nothing is lost and nothing is counted twice:

- A persistent session (stable client id, ``clean_start=False``, a session
  expiry) makes the broker queue readings while the ingest is down.
- ``manual_ack=True``: a message's PUBACK goes to the broker only after the
  transaction that recorded it committed. A crash before that means the broker
  delivers it again, and the ingest answers ``duplicate``.
- The network thread only enqueues. The main loop takes a batch (at most
  ``--batch-size`` messages, waiting at most ``--batch-ms`` for more), records
  it, then acks the batch's messages (one write of PUBACKs) and hands each
  meter's ack to the ack sender.
- Meters' acks (QoS 1) go out from a thread of their own on a second, lean
  connection (``meters.mqtt_bulk.BulkPublisher``): through paho they cost
  about as much CPU as recording the reading. They are published only after
  the commit; one the broker did not confirm is logged and not retried further:
  the meter still holds that reading, sends it again, and is acked
  ``duplicate``.
- A message received before a disconnect is never acked on the new connection:
  the broker resends it with the same packet id, and a second PUBACK for that id
  could confirm a newer message the broker gave the id to. Its redelivered copy
  is recorded (``duplicate``) and acked instead.
- Database down: nothing is acked; the same batch is retried with backoff.
  Broker down: paho reconnects with backoff.
- SIGTERM/SIGINT: finish the batch, ack, disconnect, exit 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from meters.ingest import InboundMessage, Outcome, readings_record
from meters.mqtt import MqttEndpoint, mqtt_url_parse
from meters.mqtt_bulk import BulkPublisher, BulkSender
from meters.mqtt_readahead import BatchInbox, ReadAheadClient
from meters.protocol import READINGS_FILTER, topic_readings
from utility import clock

logger = logging.getLogger("meters.ingest_mqtt")

BACKOFF_MAX_S = 30.0
# Acks to meters in flight at once. paho scans every in-flight message on
# each PUBACK (``_update_inflight``), so a large window costs more than it gains.
ACKS_IN_FLIGHT_MAX = 64
ISOLATE_AFTER_FAILURES = 3  # a batch failing this often without a database error: record it message by message
SWITCH_INTERVAL_S = 0.0005
ACK_BATCHES_QUEUED = 8  # batches of meters' acks waiting for the ack sender; then the main loop waits
ACK_WINDOW = 1000  # meters' acks awaiting the broker's PUBACK at once on the ack connection


@dataclass(frozen=True, slots=True)
class Received:
    message: InboundMessage
    mid: int
    qos: int
    epoch: int  # the connection it came on (acks go only to the same one)


@dataclass(frozen=True, slots=True)
class IngestOptions:
    client_id: str
    batch_size: int
    batch_ms: int
    session_expiry_s: int
    log_every: int
    grids: tuple[str, ...] = ()  # only these grids' readings (one ingest per shard); () = all

    def topic_filters(self) -> list[str]:
        if not self.grids:
            return [READINGS_FILTER]
        return [topic_readings(grid, "+") for grid in self.grids]


class IngestRunner:
    """One MQTT connection feeding ``record`` in batches (see the module docstring)."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        options: IngestOptions,
        record: Callable[[Sequence[InboundMessage]], list[Outcome]] = readings_record,
    ) -> None:
        self.endpoint, self.options, self.record = endpoint, options, record
        # Bounded: a full inbox blocks the network thread, so TCP pushes back on
        # the broker. Mosquitto 2.0.11 ignores our Receive Maximum for messages
        # it queued while we were away, and would otherwise hand a whole
        # backlog to this process's memory at once.
        self.inbox: BatchInbox[Received] = BatchInbox(self._receive_maximum(), room=options.batch_size)
        self.stopping = threading.Event()
        self.epoch = 0
        self.epoch_lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.client = self._client_make()
        self.acks: BulkSender | None = None

    # -- network thread: enqueue only ---------------------------------------

    def _client_make(self) -> mqtt.Client:
        client = ReadAheadClient(
            CallbackAPIVersion.VERSION2, client_id=self.options.client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        if self.endpoint.username:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=int(BACKOFF_MAX_S))
        client.max_inflight_messages_set(20)  # until the CONNACK says what the broker allows (_on_connect)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message  # what the shortcut below leaves to paho
        client.on_publish_received = self._on_publish_received
        return client

    def _receive_maximum(self) -> int:
        # Unacked messages the broker may have in flight to us: enough for a few batches.
        return min(65_535, max(1_000, 4 * self.options.batch_size))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("broker refused the ingest login: %s (retrying)", reason_code)
            return
        # Our acks to meters may have at most the broker's Receive Maximum in
        # flight (Mosquitto refuses publishes beyond it; its default is 20).
        # paho 2.2 neither reads it from the CONNACK nor lets the public setter
        # change the limit on an open connection, so set it here, before paho
        # sends anything queued on this connection.
        client._max_inflight_messages = min(ACKS_IN_FLIGHT_MAX, getattr(properties, "ReceiveMaximum", 65_535))
        logger.info(
            "connected to %s:%s as %s (session %s)",
            self.endpoint.host,
            self.endpoint.port,
            self.options.client_id,
            "resumed" if flags.session_present else "new",
        )
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.options.topic_filters()])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        for topic, code in zip(self.options.topic_filters(), reason_codes, strict=False):
            if code.is_failure:
                logger.error("subscription to %s refused: %s", topic, code)
            else:
                logger.info("subscribed to %s (QoS %s)", topic, code.value)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self.epoch_lock:
            self.epoch += 1
        if not self.stopping.is_set():
            logger.warning("disconnected from the broker (%s); reconnecting with backoff", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self._on_publish_received(bytes(msg._topic), bytes(msg.payload), msg.mid, msg.qos)

    def _on_publish_received(self, topic_bytes: bytes, payload: bytes, mid: int, qos: int) -> None:
        try:
            topic = topic_bytes.decode()
        except UnicodeDecodeError:
            topic = topic_bytes.decode("utf-8", "replace")
        # The one clock (utility.clock): the demo's accelerated time, or the wall clock.
        item = Received(InboundMessage(topic, payload, clock.now()), mid, qos, self.epoch)
        while not self.inbox.put(item, timeout=0.5):
            if self.stopping.is_set():
                return  # never acked: the broker delivers it again next session

    # -- main thread: batch, record, ack --------------------------------------

    def run(self) -> None:
        """Run until ``stop()``; returns after the last batch was acked."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.options.session_expiry_s
        properties.ReceiveMaximum = self._receive_maximum()
        # The network thread mostly waits on sockets while this thread verifies and
        # stores; a short switch interval lets it take the GIL back sooner after
        # each send (Python's default is 5 ms).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.client.connect_async(
            self.endpoint.host, self.endpoint.port, keepalive=30, clean_start=False, properties=properties
        )
        self.client.loop_start()
        self.acks = BulkSender(BulkPublisher(self.endpoint, window=ACK_WINDOW), ACK_BATCHES_QUEUED, "acks to meters")
        self.started = self.logged_at = time.monotonic()
        self.logged_count = 0
        try:
            while not self.stopping.is_set():
                batch = self._batch_take()
                if batch:
                    self._batch_handle(batch)
        finally:
            self.acks.close()
            self.client.disconnect()
            self.client.loop_stop()
            self._log_rate(final=True)

    def stop(self) -> None:
        self.stopping.set()

    def _batch_take(self) -> list[Received]:
        return self.inbox.take(self.options.batch_size, 0.2, self.options.batch_ms / 1000)

    def _batch_handle(self, batch: list[Received]) -> None:
        outcomes = self._record_retrying(batch)
        if outcomes is None:
            return  # stopping while the database is down: nothing committed, nothing acked
        self._acknowledge(outcomes)
        self.counts.update(str(outcome.status) for _, outcome in outcomes)
        if (
            self.counts.total() // self.options.log_every
            != (self.counts.total() - len(batch)) // self.options.log_every
        ):
            self._log_rate()

    def _record_retrying(self, batch: list[Received]) -> list[tuple[Received, Outcome]] | None:
        """Record the batch, retrying with backoff until it commits. A batch
        that keeps failing without a database error is recorded message by
        message; a message that still fails is left unacked (the broker keeps
        it and delivers it again after a reconnect) and logged."""
        failures, delay_s = 0, 0.5
        while True:
            try:
                if failures >= ISOLATE_AFTER_FAILURES:
                    return self._record_one_by_one(batch)
                return list(zip(batch, self.record([item.message for item in batch]), strict=True))
            except (OperationalError, InterfaceError) as exc:
                logger.warning(
                    "database unavailable (%s); retrying the batch of %d in %.1f s", exc, len(batch), delay_s
                )
                self._database_reset()
            except Exception:
                failures += 1
                logger.exception("recording a batch of %d failed (attempt %d)", len(batch), failures)
                self._database_reset()
            if self.stopping.wait(delay_s):
                return None
            delay_s = min(BACKOFF_MAX_S, delay_s * 2)

    def _record_one_by_one(self, batch: list[Received]) -> list[tuple[Received, Outcome]]:
        """Each message in its own transaction; a database outage still raises
        (the whole batch is retried), any other failure leaves that message unacked."""
        done = []
        for item in batch:
            try:
                done.append((item, self.record([item.message])[0]))
            except (OperationalError, InterfaceError):
                raise
            except Exception:
                logger.exception("message on %s left unacked: %r", item.message.topic, item.message.payload[:200])
                self._database_reset()
        return done

    @staticmethod
    def _database_reset() -> None:
        # A broken connection is not reusable: drop it so the retry reconnects.
        with contextlib.suppress(DatabaseError):
            connection.close()
        close_old_connections()

    def _acknowledge(self, outcomes: list[tuple[Received, Outcome]]) -> None:
        """After the commit: PUBACK each QoS 1 message on the connection it came
        on (one write for the batch), then hand each meter's ack (QoS 1) to the
        ack sender. A message from an earlier connection gets neither: the
        broker delivers it again, and that copy (a ``duplicate``) is acked."""
        with self.epoch_lock:
            current = [(item, outcome) for item, outcome in outcomes if item.epoch == self.epoch]
            self.client.ack_many([item.mid for item, _ in current if item.qos == 1])
        acks = [(outcome.ack_topic, outcome.ack_payload()) for _, outcome in current if outcome.ack_topic]
        assert self.acks is not None, "run() starts the ack sender"
        self.acks.send(acks)

    def _log_rate(self, final: bool = False) -> None:
        now, total = time.monotonic(), self.counts.total()
        window_rate = (total - self.logged_count) / max(now - self.logged_at, 1e-9)
        self.logged_at, self.logged_count = now, total
        summary = ", ".join(f"{status} {count:,}" for status, count in sorted(self.counts.items()))
        logger.info(
            "%s%s messages in %.1f s (%.0f/s overall, %.0f/s lately): %s; queued %d",
            "stopped after " if final else "",
            f"{total:,}",
            now - self.started,
            total / max(now - self.started, 1e-9),
            window_rate,
            summary or "none",
            len(self.inbox),
        )


class Command(BaseCommand):
    help = (
        "Take meter readings from the MQTT broker (MQTT_URL) into the database: verify, store, "
        "ack after commit. Runs until SIGTERM/SIGINT."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="most messages per transaction (500)")
        parser.add_argument("--batch-ms", type=int, default=50, help="longest wait for a batch to fill, ms (50)")
        parser.add_argument(
            "--client-id",
            default=settings.MQTT_INGEST_CLIENT_ID,
            help="MQTT client id of the persistent session (MQTT_INGEST_CLIENT_ID); keep it stable",
        )
        parser.add_argument(
            "--session-expiry-s",
            type=int,
            default=settings.MQTT_INGEST_SESSION_EXPIRY_S,
            help="how long the broker keeps queueing readings for a stopped ingest, s",
        )
        parser.add_argument("--log-every", type=int, default=10_000, help="log the rate every N messages (10000)")
        parser.add_argument(
            "--grid",
            action="append",
            default=[],
            metavar="SLUG",
            help="take only this grid's readings (repeatable): run one ingest per shard of grids, "
            "each with its own --client-id; default: every grid",
        )

    def handle(self, *args, **options) -> None:
        if options["batch_size"] < 1 or options["batch_ms"] < 0 or options["log_every"] < 1:
            raise CommandError("--batch-size and --log-every must be at least 1, --batch-ms at least 0")
        for slug in options["grid"]:
            if not slug or any(char in slug for char in "/+#\x00"):
                raise CommandError(f"--grid {slug!r} is not a grid slug")
        try:
            endpoint = mqtt_url_parse(settings.MQTT_URL)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        runner = IngestRunner(
            endpoint,
            IngestOptions(
                client_id=options["client_id"],
                batch_size=options["batch_size"],
                batch_ms=options["batch_ms"],
                session_expiry_s=options["session_expiry_s"],
                log_every=options["log_every"],
                grids=tuple(options["grid"]),
            ),
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop())
        runner.run()
