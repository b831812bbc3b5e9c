"""The meter's program: measure, close intervals, keep every reading until the
backend acknowledges it, obey signed decisions.

``Meter`` is plain code over five injected drivers (see ``drivers.py``): an
energy source, a relay, a clock, a journal (durable storage) and an MQTT
transport. It never sleeps, never reads the wall clock and never starts a
thread: the caller calls ``tick()`` in a loop (every ~250 ms on a board; as
often as it likes in a simulator with a simulated clock), and one process can
run any number of meters.

Durability (see ``journal.py``): every state change is written to the journal
*before* it takes effect in memory, so a power cut at any instant leaves the
meter in a state it had reported as durable. Closing an interval writes the
reading and the advanced registers in one record, so a seq is never reused.
Energy counted since the last checkpoint (``checkpoint_s``) is lost on a power
cut for a pulse counter; a source with its own registers (Modbus) restores it.

Topics (``grid/<grid>/meters/<meter>/``):
- ``readings`` (out, QoS 1): each closed interval, signed; re-sent until acked.
- ``ack`` (in): ``accepted``/``duplicate`` delete the reading; ``rejected`` see
  ``PERMANENT_REJECTS``.
- ``decision`` (in, retained): see ``decisions.py``; drives the relay.
- ``status`` (out, retained): ``online`` on connect; ``offline`` is the will.
- ``state`` (out, retained, signed): ``{"v", "meter", "state", "decision_seq",
  "clock", "queued", "dropped", "dead_letter", "sig"}``: the applied relay
  state and the queue's health, on connect, after a decision and each interval.
"""

import json

from firmware.backlog import SEQ, Backlog, reading_body, reading_check
from firmware.decisions import decision_parse
from firmware.signing import Signer, wire
from firmware.timefmt import interval_floor

DEFAULTS = {
    "interval_s": 3600,
    "queue_max": 336,  # two weeks of hourly readings, ~100 bytes of RAM each
    "ack_timeout_s": 60,  # re-send an unacknowledged reading after this long
    "hold_retry_s": 900,  # after a retryable rejection, wait this long
    "max_inflight": 8,  # readings sent and not yet acknowledged
    "checkpoint_s": 300,  # write the registers at least this often while they move
    "journal_max_bytes": 32768,  # compact the journal past this size
    "initial_state": "connect",  # relay state before the first decision ever
    "report_clock": True,  # add "clock" to readings
    "reconnect_min_s": 1,
    "reconnect_max_s": 300,
}
REQUIRED = ("grid", "meter", "secret")
ACCEPTED = ("accepted", "duplicate")
# Rejections that no re-send can fix: the reading itself is wrong or already
# superseded. It leaves the queue and is counted in ``dead_letter``. Any other
# reason (bad_signature, unknown_meter, inactive_meter, topic_mismatch,
# future_period, or one this firmware does not know) says the meter's key,
# registration or clock is wrong, not its data: the reading stays queued and is
# retried every ``hold_retry_s``, so an operator who fixes the key or the
# registration gets the backlog, re-signed with the new key.
PERMANENT_REJECTS = (
    "bad_json",
    "not_object",
    "too_large",
    "bad_topic",
    "bad_version",
    "bad_field",
    "unaligned_period",
    "negative_value",
    "totals_inconsistent",
    "stale_seq",
    "conflict",
)
COUNTERS = (
    "closed",
    "sent",
    "acked",
    "rejected",
    "held",
    "decisions_applied",
    "decisions_ignored",
    "bad_messages",
    "source_errors",
    "connects",
    "connect_failures",
    "journal_corrupt",
    "compactions",
)


def config_build(config):
    """``config`` (a dict, e.g. from ``config.json``) merged over ``DEFAULTS``;
    ``ValueError`` names the first missing or malformed key."""
    merged = dict(DEFAULTS)
    merged.update(config)
    for key in REQUIRED:
        if not isinstance(merged.get(key), str) or not merged[key]:
            raise ValueError("config: " + key + " must be a non-empty string")
    for key in ("grid", "meter"):
        for char in merged[key]:
            if char in "/+#" or char <= " ":
                raise ValueError("config: " + key + " may not hold '/', '+', '#' or spaces")
    for key in DEFAULTS:
        default = DEFAULTS[key]
        if type(default) is int and (type(merged[key]) is not int or merged[key] < 1):
            raise ValueError("config: " + key + " must be a positive integer")
    if merged["report_clock"] not in (True, False):
        raise ValueError("config: report_clock is true or false")
    if merged["initial_state"] not in ("connect", "disconnect"):
        raise ValueError("config: initial_state is connect or disconnect")
    if 86400 % merged["interval_s"]:
        raise ValueError("config: interval_s must divide a day")
    return merged


def _fresh_state(meter_id, initial_state):
    return {
        "meter": meter_id,
        "seq": 1,  # the next reading's seq
        "open": None,  # start of the open interval (Unix s), None until the clock is known
        "imp": 0,  # Wh imported in the open interval
        "exp": 0,
        "it": 0,  # cumulative import register, Wh
        "et": 0,
        "vmin": None,  # decivolts seen in the open interval
        "vmax": None,
        "dseq": 0,  # seq of the last applied decision
        "relay": initial_state,
        "drop": 0,  # readings ever refused by a full queue
        "dead": 0,  # readings ever removed after a permanent rejection
        "src": None,  # the energy source's snapshot
    }


def _state_valid(state, meter_id):
    if not isinstance(state, dict) or state.get("meter") != meter_id:
        return False
    for key in ("seq", "imp", "exp", "it", "et", "dseq", "drop", "dead"):
        if type(state.get(key)) is not int or state[key] < 0:
            return False
    opened = state.get("open")
    if opened is not None and (type(opened) is not int or opened < 0):
        return False
    return state.get("relay") in ("connect", "disconnect") and state["seq"] >= 1


class Meter:
    """One meter. Call ``boot()`` once (``tick()`` does it if needed), then
    ``tick()`` forever; ``shutdown()`` for a clean stop."""

    def __init__(self, config, source, relay, clock, journal, transport, log=None):
        self.config = config_build(config)
        self.meter_id = self.config["meter"]
        self.signer = Signer(self.config["secret"])
        base = "grid/" + self.config["grid"] + "/meters/" + self.meter_id + "/"
        self.topic_readings = base + "readings"
        self.topic_ack = base + "ack"
        self.topic_decision = base + "decision"
        self.topic_status = base + "status"
        self.topic_state = base + "state"
        self.source = source
        self.relay = relay
        self.clock = clock
        self.journal = journal
        self.transport = transport
        self.log = log or (lambda message: None)
        self.backlog = Backlog(self.config["queue_max"])
        self.counters = {}
        for name in COUNTERS:
            self.counters[name] = 0
        self.state = _fresh_state(self.meter_id, self.config["initial_state"])
        self.booted = False
        self.online = False
        self._sent_at = {}  # seq -> monotonic s of the last send
        self._hold_until = {}  # seq -> monotonic s before which it is not re-sent
        self._dirty = False
        self._last_persist = 0
        self._compacted_size = 0
        self._failures = 0
        self._next_attempt = 0
        transport.set_callback(self.on_message)

    # -- boot and persistence ------------------------------------------------

    def boot(self):
        """Replay the journal, restore the source and the relay, compact."""
        records = self.journal.load()
        self.counters["journal_corrupt"] = self.journal.corrupt
        state, backlog, refused = self._replay(records)
        if state is None:
            if records:
                self.log("journal belongs to another meter or is unreadable: starting fresh")
            state, backlog, refused = _fresh_state(self.meter_id, self.config["initial_state"]), [], 0
        self.state = dict(state)
        self.state["drop"] += refused
        for reading in backlog:
            self.backlog.push(reading)
        restore = getattr(self.source, "restore", None)
        if restore is not None and self.state.get("src") is not None:
            restore(self.state["src"])
        self.relay.set(self.state["relay"] == "connect")
        self._compact()
        self._last_persist = self.clock.monotonic()
        self.booted = True
        self.log(
            "boot: seq "
            + str(self.state["seq"])
            + ", "
            + str(len(self.backlog))
            + " queued, relay "
            + self.state["relay"]
        )

    def _replay(self, records):
        state = None
        queued = []
        for record in records:
            kind = record.get("t")
            if kind == "q" or (kind == "r" and record.get("q")):
                try:
                    reading_check(record.get("r"))
                except ValueError:
                    continue
                queued = [item for item in queued if item[SEQ] != record["r"][SEQ]]
                queued.append(tuple(record["r"]))
            elif kind == "x":
                queued = [item for item in queued if item[SEQ] != record.get("seq")]
            if "st" in record and _state_valid(record["st"], self.meter_id):
                state = record["st"]
        if state is None:
            return None, [], 0
        queued.sort(key=lambda item: item[SEQ])
        keep = queued[: self.config["queue_max"]]
        return state, keep, len(queued) - len(keep)

    def _persist(self, kind, state, extra=None, then=None):
        """Write ``state`` (and ``extra``) durably, then make it the meter's and
        run ``then`` (the matching queue change); compact when the journal is
        large, only once memory and journal agree again."""
        record = {"t": kind, "st": state}
        if extra:
            record.update(extra)
        self.journal.append(record)
        self.state = state
        self._dirty = False
        self._last_persist = self.clock.monotonic()
        if then is not None:
            then()
        # Compact once the appended records exceed journal_max_bytes, counted
        # past the last compaction's size: a big backlog alone does not
        # trigger a rewrite on every write (flash wears out).
        if self.journal.size() > self._compacted_size + self.config["journal_max_bytes"]:
            self._compact()

    def _compact(self):
        records = [{"t": "q", "r": list(reading)} for reading in self.backlog.items()]
        records.append({"t": "s", "st": self.state})
        self.journal.rewrite(records)
        self._compacted_size = self.journal.size()
        self.counters["compactions"] += 1

    def _next_state(self):
        state = dict(self.state)
        snapshot = getattr(self.source, "snapshot", None)
        state["src"] = snapshot() if snapshot is not None else None
        return state

    # -- the loop --------------------------------------------------------------

    def tick(self):
        """Measure, close a due interval, checkpoint, and talk to the broker."""
        if not self.booted:
            self.boot()
        self._measure()
        self._close_due()
        if self._dirty and self.clock.monotonic() - self._last_persist >= self.config["checkpoint_s"]:
            self._persist("s", self._next_state())
        self._network()

    def _measure(self):
        try:
            import_wh, export_wh, volts_dv = self.source.read()
        except (OSError, ValueError, TypeError) as exc:
            self.counters["source_errors"] += 1
            self.log("energy source: " + repr(exc))
            return
        if type(import_wh) is not int or type(export_wh) is not int or import_wh < 0 or export_wh < 0:
            self.counters["source_errors"] += 1
            self.log("energy source gave a non-integer or negative increment")
            return
        state = self.state
        if import_wh or export_wh:
            state["imp"] += import_wh
            state["it"] += import_wh
            state["exp"] += export_wh
            state["et"] += export_wh
            self._dirty = True
        if type(volts_dv) is int and volts_dv >= 0:
            if state["vmin"] is None or volts_dv < state["vmin"]:
                state["vmin"] = volts_dv
            if state["vmax"] is None or volts_dv > state["vmax"]:
                state["vmax"] = volts_dv

    def _close_due(self):
        """Close the open interval once the clock has passed its end.

        Energy read in the same tick goes to the interval being closed (it was
        measured up to now). After an outage longer than an interval, the
        skipped intervals get no reading: the backend sees the gap, and the
        registers still hold every Wh.
        """
        now = self.clock.now()
        if now is None:
            return
        period_s = self.config["interval_s"]
        opened = self.state["open"]
        if opened is None:
            state = self._next_state()
            state["open"] = interval_floor(now, period_s)
            self._persist("s", state)
            return
        if now < opened + period_s:
            return
        old = self.state
        reading = (
            old["seq"],
            opened,
            period_s,
            old["imp"],
            old["exp"],
            old["it"],
            old["et"],
            old["vmin"],
            old["vmax"],
            self.clock.status(),
        )
        reading_check(reading)
        queued = len(self.backlog) < self.backlog.capacity
        state = self._next_state()
        state.update({"seq": old["seq"] + 1, "open": interval_floor(now, period_s), "imp": 0, "exp": 0})
        state.update({"vmin": None, "vmax": None})
        if not queued:
            state["drop"] += 1
            self.log("queue full: reading " + str(reading[SEQ]) + " dropped")
        push = (lambda: self.backlog.push(reading)) if queued else None
        self._persist("r", state, {"r": list(reading), "q": 1 if queued else 0}, push)
        self.counters["closed"] += 1
        if self.online:
            self._safely(self._publish_state)

    # -- MQTT ------------------------------------------------------------------

    def _network(self):
        now_s = self.clock.monotonic()
        if self.online and not self.transport.is_connected():
            self._lost("connection dropped")
        if not self.online:
            if now_s < self._next_attempt:
                return
            try:
                self._connect()
            except OSError as exc:
                self._lost("connect failed: " + repr(exc))
                self.counters["connect_failures"] += 1
                return
        try:
            self.transport.poll()
            self._send_due(self.clock.monotonic())
        except OSError as exc:
            self._lost(repr(exc))

    def _connect(self):
        self.transport.connect(self.meter_id, self.topic_status, b"offline")
        self.online = True
        self.transport.publish(self.topic_status, b"online", True, 1)
        self.transport.subscribe(self.topic_ack, 1)
        self.transport.subscribe(self.topic_decision, 1)
        self._publish_state()
        # A new session: every queued reading is due again, oldest first.
        self._sent_at = {}
        self._failures = 0
        self.counters["connects"] += 1
        self.log("connected")

    def _lost(self, why):
        if self.online:
            self.log("offline: " + why)
        self.online = False
        try:
            self.transport.close()
        except OSError:
            pass
        self._failures += 1
        low, high = self.config["reconnect_min_s"], self.config["reconnect_max_s"]
        delay = min(high, low * (2 ** min(self._failures - 1, 16)))
        # Spread a fleet's reconnects after a broker restart: a fixed
        # per-meter fraction (up to a half) of the delay, no RNG needed.
        spread = self.signer.digest(b"reconnect")[0] / 512
        self._next_attempt = self.clock.monotonic() + delay + delay * spread

    def _send_due(self, now_s):
        timeout_s = self.config["ack_timeout_s"]
        inflight = 0
        for seq in self._sent_at:
            if now_s - self._sent_at[seq] < timeout_s:
                inflight += 1
        for reading in self.backlog.items():
            if inflight >= self.config["max_inflight"]:
                return
            seq = reading[SEQ]
            if self._hold_until.get(seq, now_s) > now_s:
                # The oldest reading waits out its hold and the newer ones wait
                # behind it: sent past it, they would make it stale.
                return
            sent_at = self._sent_at.get(seq)
            if sent_at is not None and now_s - sent_at < timeout_s:
                continue
            if self.backlog.get(seq) is None:
                continue  # acked while an earlier publish waited for its PUBACK
            body = reading_body(self.meter_id, reading, self.config["report_clock"])
            self.transport.publish(self.topic_readings, wire(self.signer.signed(body)), False, 1)
            self._sent_at[seq] = now_s
            self.counters["sent"] += 1
            inflight += 1

    def _publish_state(self):
        body = {
            "v": 1,
            "meter": self.meter_id,
            "state": self.state["relay"],
            "decision_seq": self.state["dseq"],
            "clock": self.clock.status(),
            "queued": len(self.backlog),
            "dropped": self.state["drop"],
            "dead_letter": self.state["dead"],
        }
        self.transport.publish(self.topic_state, wire(self.signer.signed(body)), True, 1)

    def _safely(self, action):
        try:
            action()
        except OSError as exc:
            self._lost(repr(exc))

    def on_message(self, topic, payload):
        """The transport's callback: ``ack`` and ``decision`` messages. Never raises."""
        try:
            if isinstance(topic, (bytes, bytearray)):
                topic = topic.decode("utf-8")
            if topic == self.topic_ack:
                self._on_ack(payload)
            elif topic == self.topic_decision:
                self._on_decision(payload)
        except Exception as exc:
            self.counters["bad_messages"] += 1
            self.log("message on " + repr(topic) + " not handled: " + repr(exc))

    def _on_ack(self, payload):
        ack = json.loads(payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload)
        if not isinstance(ack, dict) or type(ack.get("seq")) is not int:
            self.counters["bad_messages"] += 1
            self.log("ack without a seq: " + repr(ack)[:120])
            return
        seq, status, reason = ack["seq"], ack.get("status"), ack.get("reason")
        if status in ACCEPTED:
            if self.backlog.get(seq) is not None:
                self._persist("x", self._next_state(), {"seq": seq, "k": status}, lambda: self._forget(seq))
                self.counters["acked"] += 1
        elif status == "rejected":
            self.counters["rejected"] += 1
            self.log("reading " + str(seq) + " rejected: " + repr(reason))
            if self.backlog.get(seq) is None:
                return
            if reason in PERMANENT_REJECTS:
                state = self._next_state()
                state["dead"] += 1
                self._persist("x", state, {"seq": seq, "k": "dead"}, lambda: self._forget(seq))
            else:
                self.counters["held"] += 1
                self._sent_at.pop(seq, None)
                self._hold_until[seq] = self.clock.monotonic() + self.config["hold_retry_s"]
        else:
            self.counters["bad_messages"] += 1

    def _forget(self, seq):
        self.backlog.remove(seq)
        self._sent_at.pop(seq, None)
        self._hold_until.pop(seq, None)

    def _on_decision(self, payload):
        decision, why = decision_parse(payload, self.signer, self.state["dseq"])
        if decision is None:
            if why != "empty":
                self.counters["decisions_ignored"] += 1
                self.log("decision ignored: " + why)
            return
        state = self._next_state()
        state["dseq"] = decision["seq"]
        state["relay"] = decision["state"]
        self._persist("s", state)
        self.relay.set(decision["state"] == "connect")
        self.counters["decisions_applied"] += 1
        self.log("decision " + str(decision["seq"]) + " applied: " + decision["state"])
        if self.online:
            self._safely(self._publish_state)

    # -- for operators, tests and the simulator ------------------------------

    def shutdown(self):
        """Checkpoint, say ``offline`` (retained) and disconnect cleanly."""
        if self.booted and self._dirty:
            self._persist("s", self._next_state())
        if self.online:
            try:
                self.transport.publish(self.topic_status, b"offline", True, 1)
            except OSError:
                pass
        self.online = False
        try:
            self.transport.close()
        except OSError:
            pass

    def queued_seqs(self):
        return self.backlog.seqs()
