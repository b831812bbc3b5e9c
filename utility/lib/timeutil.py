"""UTC time helpers. Pure: no Django, and no clock (callers pass ``now``).

Intervals are half-open ``[start, end)`` and aligned to the UTC epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ensure_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time here is UTC-aware")
    return moment.astimezone(UTC)


def interval_floor(moment: datetime, interval_s: int) -> datetime:
    """Start of the interval of ``interval_s`` seconds that contains ``moment``."""
    seconds = int((ensure_utc(moment) - EPOCH).total_seconds())
    return EPOCH + timedelta(seconds=seconds - seconds % interval_s)


def is_aligned(moment: datetime, interval_s: int) -> bool:
    moment = ensure_utc(moment)
    return moment.microsecond == 0 and interval_floor(moment, interval_s) == moment


def parse_utc(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries an offset (``Z`` allowed)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    return moment.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    """``2026-11-22T10:00:00Z``: the one way timestamps leave the platform."""
    return ensure_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
