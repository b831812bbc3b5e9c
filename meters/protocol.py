"""The MQTT contract between meters and the backend, as pure functions.

No Django, no clock, no I/O: callers pass ``now`` and what they know about the
meter. ``meters/ingest.py`` records what these functions decide; firmware makers
can read the rules here and in ``docs/mqtt.md``, and check their signing code
against the golden payloads in ``meters/tests/golden/``.

A reading is ``grid/<grid>/meters/<meter>/readings`` carrying a JSON object::

    {"v": 1, "meter": "m-1", "seq": 42, "period_start": "2026-01-01T10:00:00Z",
     "period_s": 3600, "import_wh": 120, "export_wh": 0,
     "import_total_wh": 98120, "export_total_wh": 0, "v_min": 228.4, "v_max": 241,
     "sig": "<64 lowercase hex>"}

``sig`` is HMAC-SHA256, keyed with the UTF-8 bytes of the meter's secret, over
``canonical_body`` (the object without ``sig``, keys sorted, no spaces, UTF-8).

The checks run in a fixed order, so one message has exactly one reason:
topic, size, JSON, object, payload meter = topic meter, known meter, topic grid
= meter's grid, active, version, signature, fields (types, then signs), period
(aligned, its length, not in the future), then the rules against the meter's
previous reading (``reading_follows``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from utility.lib.timeutil import format_utc, is_aligned, parse_utc

READINGS_FILTER = "grid/+/meters/+/readings"
PROTOCOL_VERSION = 1
MAX_PAYLOAD_BYTES = 16 * 1024
# A meter's clock may run this far ahead of the backend's.
CLOCK_SKEW_S = 300
# Counters and seq stay within what every JSON parser holds exactly (2^53 - 1).
MAX_INTEGER = 2**53 - 1
MAX_VOLTS = 100_000

REQUIRED_FIELDS = (
    "v",
    "meter",
    "seq",
    "period_start",
    "period_s",
    "import_wh",
    "export_wh",
    "import_total_wh",
    "export_total_wh",
    "sig",
)
OPTIONAL_FIELDS = ("v_min", "v_max", "clock")
# The meter's own note on its time source (firmware/README.md): signed with the
# rest of the body, checked here, not stored.
CLOCK_STATUSES = ("ntp", "unsynced")
COUNT_FIELDS = ("seq", "period_s", "import_wh", "export_wh", "import_total_wh", "export_total_wh")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$", re.ASCII)
SIG_RE = re.compile(r"^[0-9a-f]{64}$", re.ASCII)


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class Reason(StrEnum):
    """Why a reading was rejected; sent in the ack and counted per code."""

    BAD_JSON = "bad_json"  # not UTF-8, not JSON, NaN/Infinity, a key twice, a lone surrogate
    NOT_OBJECT = "not_object"  # JSON, but not an object
    TOO_LARGE = "too_large"  # payload above MAX_PAYLOAD_BYTES
    BAD_TOPIC = "bad_topic"  # not grid/<grid>/meters/<meter>/readings (no ack can be sent)
    TOPIC_MISMATCH = "topic_mismatch"  # payload meter != topic meter, or topic grid != meter's grid
    UNKNOWN_METER = "unknown_meter"
    INACTIVE_METER = "inactive_meter"
    BAD_SIGNATURE = "bad_signature"  # sig missing, malformed, or not this meter's HMAC
    BAD_VERSION = "bad_version"  # v is not the integer 1
    BAD_FIELD = "bad_field"  # a field missing, unknown, of the wrong type or out of range
    UNALIGNED_PERIOD = "unaligned_period"  # period_start off the grid's intervals, or period_s != interval
    FUTURE_PERIOD = "future_period"  # the interval has not ended yet (beyond the clock skew)
    NEGATIVE_VALUE = "negative_value"
    TOTALS_INCONSISTENT = "totals_inconsistent"  # cumulative totals do not follow the previous reading
    STALE_SEQ = "stale_seq"  # seq or period not after the last accepted reading's
    CONFLICT = "conflict"  # this interval is already stored with different content


class Rejected(Exception):
    """A message refused for ``reason``; ``detail`` says what exactly (for operators)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


# -- signing ---------------------------------------------------------------


# json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
# built once: json.dumps with options builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_body(payload: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: ``payload`` without ``sig``, keys sorted,
    no whitespace, non-ASCII kept as UTF-8 — exactly
    ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.
    Raises ``UnicodeEncodeError`` for a string holding a lone surrogate (it has
    no UTF-8 form)."""
    body = {key: value for key, value in payload.items() if key != "sig"}
    return _CANONICAL.encode(body).encode()


def sign(secret: str, payload: Mapping[str, Any]) -> str:
    """Lowercase hex HMAC-SHA256 of ``canonical_body(payload)`` keyed with the
    UTF-8 bytes of ``secret``: the ``sig`` of a reading or a decision."""
    return hmac.new(secret.encode(), canonical_body(payload), hashlib.sha256).hexdigest()


def signature_valid(secret: str, payload: Mapping[str, Any], canonical: bytes | None = None) -> bool:
    """``payload["sig"]`` is ``sign(secret, payload)`` (constant-time compare);
    pass ``canonical`` when ``canonical_body(payload)`` is already at hand."""
    sig = payload.get("sig")
    if not isinstance(sig, str) or not SIG_RE.match(sig):
        return False
    body = canonical_body(payload) if canonical is None else canonical
    # hmac.digest: OpenSSL's one-shot HMAC, the same value as hmac.new(...) without its Python object.
    expected = hmac.digest(secret.encode(), body, "sha256").hex()
    return hmac.compare_digest(expected.encode(), sig.encode())


# -- topics and acks ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicRef:
    """The grid slug and meter id named by a readings topic."""

    grid: str
    meter: str


def topic_parse(topic: str) -> TopicRef:
    """``grid/<grid>/meters/<meter>/readings`` → ``TopicRef``; else ``Rejected(bad_topic)``."""
    parts = topic.split("/")
    if (
        len(parts) != 5
        or parts[0] != "grid"
        or parts[2] != "meters"
        or parts[4] != "readings"
        or not parts[1]
        or not parts[3]
        or "+" in topic
        or "#" in topic
        or "\x00" in topic
    ):
        raise Rejected(Reason.BAD_TOPIC, f"not grid/<grid>/meters/<meter>/readings: {topic[:120]!r}")
    return TopicRef(grid=parts[1], meter=parts[3])


def topic_readings(grid: str, meter: str) -> str:
    return f"grid/{grid}/meters/{meter}/readings"


def topic_ack(grid: str, meter: str) -> str:
    return f"grid/{grid}/meters/{meter}/ack"


def ack_payload(seq: int | None, status: Status, reason: Reason | None) -> bytes:
    """The ack a meter receives: ``{"seq", "status", "reason"}`` (reason null unless rejected).

    The same bytes as ``json.dumps(..., separators=(",", ":"))``, formatted
    directly (one per reading on the ingest's hot path): ``seq`` is an int or
    None, and status and reason codes are plain ASCII words that need no escaping."""
    seq_text = "null" if seq is None else str(int(seq))
    reason_text = f'"{reason.value}"' if reason else "null"
    return f'{{"seq":{seq_text},"status":"{status.value}","reason":{reason_text}}}'.encode()


# -- decoding -----------------------------------------------------------------


def _pairs_unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A key given twice would let the signer and the backend read different
    # values (parsers disagree on which one wins), so it is refused outright.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_unique, parse_constant=_no_constants)


def payload_decode(raw: bytes) -> dict[str, Any]:
    """Parse a payload into a JSON object; ``Rejected`` with ``too_large``,
    ``bad_json`` or ``not_object`` otherwise."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise Rejected(Reason.TOO_LARGE, f"{len(raw)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except UnicodeDecodeError as exc:
        raise Rejected(Reason.BAD_JSON, f"not UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise Rejected(Reason.BAD_JSON, "nested too deeply") from None
    except ValueError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)[:200]) from None
    if not isinstance(value, dict):
        raise Rejected(Reason.NOT_OBJECT, f"a JSON {type(value).__name__}, not an object")
    return value


# -- verification ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterRef:
    """What verification needs to know about the meter a topic names."""

    public_id: str
    grid: str
    active: bool
    interval_s: int


@dataclass(frozen=True, slots=True)
class ReadingReport:
    """A verified reading: energy in Wh for ``[period_start, +period_s)``,
    cumulative register totals in Wh, voltages in decivolts."""

    meter: str
    seq: int
    period_start: datetime
    period_s: int
    import_wh: int
    export_wh: int
    import_total_wh: int
    export_total_wh: int
    v_min_dv: int | None
    v_max_dv: int | None

    def content(self) -> tuple[int, int, int, int, int, int | None, int | None]:
        """What must match for a re-sent reading to be a duplicate."""
        return (
            self.seq,
            self.import_wh,
            self.export_wh,
            self.import_total_wh,
            self.export_total_wh,
            self.v_min_dv,
            self.v_max_dv,
        )


def reading_verify(
    topic: TopicRef, body: Mapping[str, Any], meter: MeterRef | None, secret: str | None, now: datetime
) -> ReadingReport:
    """Check everything that needs no earlier reading; raise ``Rejected``.

    ``meter`` is the registered meter the topic names (None: unknown) and
    ``secret`` its plain secret. ``now`` is when the backend received the message.
    """
    claimed = body.get("meter")
    if not isinstance(claimed, str):
        raise Rejected(Reason.BAD_FIELD, "meter must be a string")
    if claimed != topic.meter:
        raise Rejected(Reason.TOPIC_MISMATCH, f"payload meter {claimed[:40]!r} ≠ topic meter {topic.meter[:40]!r}")
    if meter is None or secret is None:
        raise Rejected(Reason.UNKNOWN_METER, f"no meter {topic.meter[:40]!r}")
    if topic.grid != meter.grid:
        raise Rejected(Reason.TOPIC_MISMATCH, f"meter {meter.public_id} belongs to grid {meter.grid!r}")
    if not meter.active:
        raise Rejected(Reason.INACTIVE_METER, f"meter {meter.public_id} is deactivated")
    version = body.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise Rejected(Reason.BAD_VERSION, f"v must be {PROTOCOL_VERSION}")
    try:
        canonical = canonical_body(body)
    except UnicodeEncodeError:
        raise Rejected(Reason.BAD_JSON, "a string holds a lone surrogate (no UTF-8 form)") from None
    if not signature_valid(secret, body, canonical):
        raise Rejected(Reason.BAD_SIGNATURE, "sig is not the HMAC-SHA256 of the canonical body with this meter's key")
    report = _fields_parse(body)
    _period_check(report, meter.interval_s, now)
    return report


def _fields_parse(body: Mapping[str, Any]) -> ReadingReport:
    for name in body:
        if name not in REQUIRED_FIELDS and name not in OPTIONAL_FIELDS:
            raise Rejected(Reason.BAD_FIELD, f"unknown field {name[:40]!r}")
    for name in REQUIRED_FIELDS:
        if name not in body:
            raise Rejected(Reason.BAD_FIELD, f"{name} is missing")
    counts = {name: _count(body[name], name) for name in COUNT_FIELDS}
    start_text = body["period_start"]
    if not isinstance(start_text, str) or not TIMESTAMP_RE.match(start_text):
        raise Rejected(Reason.BAD_FIELD, "period_start must be UTC ISO 8601, e.g. 2026-01-01T10:00:00Z")
    try:
        period_start = parse_utc(start_text)
    except ValueError as exc:
        raise Rejected(Reason.BAD_FIELD, str(exc)[:200]) from None
    if "clock" in body and body["clock"] not in CLOCK_STATUSES:
        raise Rejected(Reason.BAD_FIELD, f"clock must be one of {', '.join(CLOCK_STATUSES)}")
    v_min_dv = _decivolts(body.get("v_min"), "v_min")
    v_max_dv = _decivolts(body.get("v_max"), "v_max")
    if v_min_dv is not None and v_max_dv is not None and v_min_dv > v_max_dv:
        raise Rejected(Reason.BAD_FIELD, "v_min is above v_max")
    return ReadingReport(meter=body["meter"], period_start=period_start, v_min_dv=v_min_dv, v_max_dv=v_max_dv, **counts)


def _count(value: Any, name: str) -> int:
    # bool is an int in Python, and 1.0 == 1: only a JSON integer is a count.
    if type(value) is not int:
        raise Rejected(Reason.BAD_FIELD, f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise Rejected(Reason.NEGATIVE_VALUE, f"{name} is {value}")
    if value > MAX_INTEGER:
        raise Rejected(Reason.BAD_FIELD, f"{name} is above 2^53 - 1")
    return value


def _decivolts(value: Any, name: str) -> int | None:
    """Volts (a JSON number) → integer decivolts, halves to even; None stays None."""
    if value is None:
        return None
    if type(value) not in (int, float):
        raise Rejected(Reason.BAD_FIELD, f"{name} must be a number of volts, got {type(value).__name__}")
    if value < 0:
        raise Rejected(Reason.NEGATIVE_VALUE, f"{name} is {value}")
    if value > MAX_VOLTS:
        raise Rejected(Reason.BAD_FIELD, f"{name} is above {MAX_VOLTS} V")
    # repr() is the shortest text that reads back as the same float: 229.3 → 2293.
    return int((Decimal(repr(value)) * 10).to_integral_value(rounding=ROUND_HALF_EVEN))


def _period_check(report: ReadingReport, interval_s: int, now: datetime) -> None:
    """The period is one whole grid interval that has ended, give or take the skew.

    A reading for ``[start, end)`` is accepted once ``end <= now + CLOCK_SKEW_S``:
    a meter whose clock runs up to five minutes fast can still send at what it
    believes is the end of the interval; anything later is ``future_period``.
    """
    if report.period_s != interval_s:
        raise Rejected(Reason.UNALIGNED_PERIOD, f"period_s is {report.period_s}, the grid's interval is {interval_s}")
    if not is_aligned(report.period_start, interval_s):
        raise Rejected(
            Reason.UNALIGNED_PERIOD, f"{report.period_start.isoformat()} is not on a {interval_s} s boundary"
        )
    end = report.period_start + timedelta(seconds=interval_s)
    if end > now + timedelta(seconds=CLOCK_SKEW_S):
        raise Rejected(Reason.FUTURE_PERIOD, f"interval ends {format_utc(end)}, received {format_utc(now)}")


# -- the rules against the previous reading -------------------------------------


@dataclass(frozen=True, slots=True)
class MeterProgress:
    """The meter's last accepted reading (all None before its first)."""

    seq: int | None = None
    period_start: datetime | None = None
    import_total_wh: int | None = None
    export_total_wh: int | None = None

    @classmethod
    def after(cls, report: ReadingReport) -> MeterProgress:
        return cls(report.seq, report.period_start, report.import_total_wh, report.export_total_wh)


def reading_follows(previous: MeterProgress, report: ReadingReport) -> None:
    """Check ``report`` against the meter's last accepted reading; raise ``Rejected``.

    - ``seq`` and ``period_start`` both move forward (``stale_seq``).
    - The cumulative totals never decrease (``totals_inconsistent``).
    - Next interval (no gap): ``import_wh`` and ``export_wh`` equal the rise of
      the totals exactly.
    - After a gap (intervals never reported): the totals rose by at least this
      interval's energy; the rest is energy of the missing intervals, which no
      reading can claim any more (their seq is past), so it is visible only as
      the difference of the totals.
    - First reading: the totals hold at least this interval's energy.
    """
    if previous.seq is not None and report.seq <= previous.seq:
        raise Rejected(Reason.STALE_SEQ, f"seq {report.seq} is not above the last accepted {previous.seq}")
    if previous.period_start is not None and report.period_start <= previous.period_start:
        raise Rejected(
            Reason.STALE_SEQ,
            f"interval {format_utc(report.period_start)} is not after the last accepted "
            f"{format_utc(previous.period_start)} (readings go in order)",
        )
    for direction, energy_wh, total_wh, previous_wh in (
        ("import", report.import_wh, report.import_total_wh, previous.import_total_wh),
        ("export", report.export_wh, report.export_total_wh, previous.export_total_wh),
    ):
        _total_follows(direction, energy_wh, total_wh, previous_wh, _is_next(previous, report))


def _is_next(previous: MeterProgress, report: ReadingReport) -> bool:
    return previous.period_start is not None and report.period_start - previous.period_start == timedelta(
        seconds=report.period_s
    )


def _total_follows(direction: str, energy_wh: int, total_wh: int, previous_wh: int | None, adjacent: bool) -> None:
    base_wh = previous_wh or 0
    if total_wh < base_wh:
        raise Rejected(Reason.TOTALS_INCONSISTENT, f"{direction}_total_wh fell from {base_wh} to {total_wh}")
    rise_wh = total_wh - base_wh
    if adjacent and rise_wh != energy_wh:
        raise Rejected(
            Reason.TOTALS_INCONSISTENT, f"{direction}_wh is {energy_wh} but {direction}_total_wh rose by {rise_wh}"
        )
    if rise_wh < energy_wh:
        raise Rejected(
            Reason.TOTALS_INCONSISTENT,
            f"{direction}_wh is {energy_wh} but {direction}_total_wh rose only by {rise_wh}",
        )
