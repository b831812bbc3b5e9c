"""Energy in integer watt-hours. Pure: no Django."""

from __future__ import annotations

from decimal import Decimal

WH_PER_KWH = 1000


def format_wh(energy_wh: int) -> str:
    """Display Wh as kWh with three decimals, e.g. ``2500`` → ``"2.500"``."""
    return str((Decimal(energy_wh) / WH_PER_KWH).quantize(Decimal("0.001")))


def wh_delta(previous_total_wh: int, current_total_wh: int) -> int:
    """Energy between two readings of a cumulative register (never decreasing)."""
    if current_total_wh < previous_total_wh:
        raise ValueError("a cumulative register cannot go backwards")
    return current_total_wh - previous_total_wh
