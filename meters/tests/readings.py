"""Build real, signed reading payloads for the tests and the benchmark.

Signatures are made with the real scheme (``protocol.sign``); nothing here
bypasses verification. Times are explicit, never the clock.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from meters.protocol import sign, topic_readings
from utility.lib.timeutil import format_utc


def reading_body(
    meter: str,
    seq: int,
    period_start: datetime,
    *,
    period_s: int = 3600,
    import_wh: int = 0,
    export_wh: int = 0,
    import_total_wh: int | None = None,
    export_total_wh: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An unsigned reading body; totals default to this interval's energy
    (a meter's first reading)."""
    body = {
        "v": 1,
        "meter": meter,
        "seq": seq,
        "period_start": format_utc(period_start) if isinstance(period_start, datetime) else period_start,
        "period_s": period_s,
        "import_wh": import_wh,
        "export_wh": export_wh,
        "import_total_wh": import_wh if import_total_wh is None else import_total_wh,
        "export_total_wh": export_wh if export_total_wh is None else export_total_wh,
    }
    body.update(extra)
    return body


def signed(secret: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with its ``sig``."""
    return {**body, "sig": sign(secret, body)}


def encoded(payload: dict[str, Any]) -> bytes:
    """The wire form a meter would send (any key order and spacing verify)."""
    return json.dumps(payload, ensure_ascii=False).encode()


def default_import_wh(index: int) -> int:
    return 100 + index % 7


def import_total_before(index: int) -> int:
    """Sum of ``default_import_wh`` over the intervals before ``index``."""
    cycles, rest = divmod(index, 7)
    return 100 * index + 21 * cycles + rest * (rest - 1) // 2


class MeterStream:
    """The consecutive readings of one meter: seq 1, 2, … for consecutive
    intervals from ``first_start``, totals following each other exactly."""

    def __init__(self, grid: str, meter: str, secret: str, first_start: datetime, interval_s: int = 3600) -> None:
        self.grid, self.meter, self.secret = grid, meter, secret
        self.first_start, self.interval_s = first_start, interval_s
        self.topic = topic_readings(grid, meter)

    def body(self, index: int, import_wh: int | None = None) -> dict[str, Any]:
        """The reading of interval ``index`` (0-based): ``import_wh`` defaults
        to ``default_import_wh(index)``; nothing exported. Overriding
        ``import_wh`` keeps the total of the earlier default intervals."""
        energy_wh = default_import_wh(index) if import_wh is None else import_wh
        return reading_body(
            self.meter,
            index + 1,
            self.first_start + timedelta(seconds=self.interval_s * index),
            period_s=self.interval_s,
            import_wh=energy_wh,
            import_total_wh=import_total_before(index) + energy_wh,
        )

    def payload(self, index: int, **options: Any) -> bytes:
        return encoded(signed(self.secret, self.body(index, **options)))
