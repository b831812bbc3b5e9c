"""Display filters: integer µk as coins, integer Wh as kWh (Decimal inside)."""

from __future__ import annotations

from django import template

from utility.lib.energy import format_wh
from utility.lib.money import format_uk

register = template.Library()


@register.filter
def coins(amount_uk: int | None) -> str:
    """``2721818`` → ``"2.721818"``; ``None`` → an en dash."""
    return "–" if amount_uk is None else format_uk(int(amount_uk))


@register.filter
def kwh(energy_wh: int | None) -> str:
    """``2500`` → ``"2.500"``; ``None`` → an en dash."""
    return "–" if energy_wh is None else format_wh(int(energy_wh))


@register.filter
def percent_bp(basis_points: int | None) -> str:
    """``1234`` → ``"12.34 %"``."""
    if basis_points is None:
        return "–"
    sign = "-" if basis_points < 0 else ""
    whole, rest = divmod(abs(int(basis_points)), 100)
    return f"{sign}{whole}.{rest:02d} %"


@register.filter
def duration_s(seconds: int | None) -> str:
    """``5400`` → ``"1 h 30 min"``."""
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds // 60, 60)
    return f"{hours} h {rest} min" if hours else f"{rest} min"


@register.filter
def hours_left(hours: int | None) -> str:
    """Whole hours a balance lasts, readably; None: it never runs out."""
    if hours is None:
        return "no recent use"
    if hours <= 0:
        return "less than an hour"
    if hours >= 48:
        return f"about {hours // 24} days"
    return f"about {hours} h"


@register.filter
def utc(moment) -> str:
    """``Thu 1 Jan 14:00``: a UTC datetime the short way (``strftime``: far
    cheaper than the ``date`` filter in a table of many rows)."""
    if moment is None:
        return "–"
    return f"{moment:%a} {moment.day} {moment:%b %H:%M}"
