"""Faults a simulated fleet can be told to show, each on one named meter.

Written ``KIND:METER[@AT][+FOR][*FACTOR]``, times relative to the fleet's start
(``90s``, ``45m``, ``3h``, ``2d``, ``1h30m`` or plain seconds):

- ``offline:M-H001@2h+5h`` — from 2 h in, the meter's network is gone for
  5 h (the broker sends its will, ``offline``). It keeps measuring and closing
  intervals into its durable queue, and catches up when it is back: every
  queued reading is sent and deleted on its ack.
- ``garbage:M-H002@1h`` — from 1 h in (for ``+FOR``, else for good), at every
  interval it closes the meter also publishes a truncated JSON payload and a
  reading signed with a wrong key (seq 0, so the rejection's ack matches none
  of its queued readings): the backend must reject and count both. Its real
  readings go through as usual.
- ``jump:M-H003@3h*10`` — from 3 h in, the meter reports ``FACTOR`` (default
  10) times the energy it really imports: a faulty or tampered meter. The grid
  did not deliver that energy, so the interval's import overtakes the export
  and settlement raises its loss alert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from firmware.signing import Signer, wire
from firmware.timefmt import utc_text

from .profiles import Curve

KINDS = ("offline", "garbage", "jump")
FAULT_RE = re.compile(
    r"^(?P<kind>[a-z]+):(?P<meter>[A-Za-z0-9][A-Za-z0-9_-]*)"
    r"(?:@(?P<at>[0-9a-z]+))?(?:\+(?P<for>[0-9a-z]+))?(?:\*(?P<factor>[0-9]+))?$"
)
DURATION_RE = re.compile(r"(\d+)([smhd]?)")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
JUMP_FACTOR = 10


def duration_parse(text: str) -> int:
    """``"1h30m"`` → 5400 seconds; ``ValueError`` for anything else."""
    parts = DURATION_RE.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 45m, 3h, 2d, 1h30m)")
    return sum(int(number) * UNIT_S[unit] for number, unit in parts)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault on ``meter`` over ``[at_s, at_s + for_s)`` after the fleet's
    start (``for_s`` None: until the end)."""

    kind: str
    meter: str
    at_s: int = 0
    for_s: int | None = None
    factor: int = JUMP_FACTOR

    def active(self, elapsed_s: int) -> bool:
        return elapsed_s >= self.at_s and (self.for_s is None or elapsed_s < self.at_s + self.for_s)


def fault_parse(text: str) -> Fault:
    """``"offline:M-H001@2h+5h"`` → ``Fault``; ``ValueError`` says what is wrong."""
    match = FAULT_RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a fault: {text!r} (KIND:METER[@AT][+FOR][*FACTOR], e.g. offline:M-H001@2h+5h)")
    kind = match["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown fault {kind!r}: one of {', '.join(KINDS)}")
    at_s = duration_parse(match["at"]) if match["at"] else 0
    for_s = duration_parse(match["for"]) if match["for"] else None
    if kind == "offline" and not for_s:
        raise ValueError(f"{text!r}: an outage needs a length, e.g. offline:{match['meter']}@2h+5h")
    if match["factor"] and kind != "jump":
        raise ValueError(f"{text!r}: only a jump takes a *FACTOR")
    factor = int(match["factor"]) if match["factor"] else JUMP_FACTOR
    if factor < 1:
        raise ValueError(f"{text!r}: the factor is a whole number ≥ 1")
    return Fault(kind, match["meter"], at_s, for_s, factor)


class OutageTransport:
    """A meter's transport, cut off while ``down()`` says so: it refuses to
    connect, and the first use after the outage began drops the connection
    without a DISCONNECT (the broker then publishes the meter's will)."""

    def __init__(self, inner, down) -> None:
        self.inner = inner
        self.down = down
        self.outages = 0

    def _guard(self) -> None:
        if self.down():
            if self.inner.is_connected():
                self.inner.crash()
                self.outages += 1
            raise OSError("network down (simulated outage)")

    def set_callback(self, callback) -> None:
        self.inner.set_callback(callback)

    def connect(self, client_id, will_topic=None, will_payload=None) -> None:
        self._guard()
        self.inner.connect(client_id, will_topic, will_payload)

    def is_connected(self) -> bool:
        try:
            self._guard()
        except OSError:
            return False
        return self.inner.is_connected()

    def subscribe(self, topic, qos=1) -> None:
        self._guard()
        self.inner.subscribe(topic, qos)

    def publish(self, topic, payload, retain=False, qos=1) -> None:
        self._guard()
        self.inner.publish(topic, payload, retain, qos)

    def poll(self) -> None:
        self._guard()
        self.inner.poll()

    def close(self) -> None:
        self.inner.close()

    def crash(self) -> None:
        self.inner.crash()


class JumpCurve(Curve):
    """What a jumped meter reports: ``factor`` × the import of ``inner`` while
    ``active(unix_s)``; the grid's physics still see ``inner``."""

    kind = "jump"

    def __init__(self, inner: Curve, factor: int, active) -> None:
        self.inner = inner
        self.factor = factor
        self.active = active

    def power(self, minute: int) -> tuple[int, int]:
        import_w, export_w = self.inner.power(minute)
        if self.active(minute * 60):
            import_w *= self.factor
        return import_w, export_w


def garbage_payloads(meter_id: str, secret: str, period_start_s: int, period_s: int) -> list[bytes]:
    """Two payloads a backend must refuse: cut-off JSON (``bad_json``) and a
    well-formed reading signed with another key (``bad_signature``)."""
    forged = {
        "v": 1,
        "meter": meter_id,
        "seq": 0,
        "period_start": utc_text(period_start_s),
        "period_s": period_s,
        "import_wh": 0,
        "export_wh": 99_999,
        "import_total_wh": 0,
        "export_total_wh": 99_999,
    }
    body = wire(Signer("not-" + secret).signed(forged))
    return [body[: len(body) // 2], body]
