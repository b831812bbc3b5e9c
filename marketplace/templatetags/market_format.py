"""Display filters of the market pages: integers in, readable text out."""

from __future__ import annotations

from decimal import Decimal

from django import template

from utility.lib.energy import format_wh
from utility.lib.money import format_uk

register = template.Library()


@register.filter
def mcoins(amount_uk: int | None) -> str:
    """µk → coins with six decimals (``1600000`` → ``"1.600000"``); None → an en dash."""
    return "–" if amount_uk is None else format_uk(int(amount_uk))


@register.filter
def mkwh(energy_wh: int | None) -> str:
    """Wh → kWh with three decimals (``2500`` → ``"2.500"``); None → an en dash."""
    return "–" if energy_wh is None else format_wh(int(energy_wh))


@register.filter
def mvolts(decivolts: int | None) -> str:
    """dV → volts (``2305`` → ``"230.5"``); None → an en dash."""
    return "–" if decivolts is None else str(Decimal(int(decivolts)) / 10)


@register.filter
def mpercent(basis_points: int | None) -> str:
    """bp → percent (``500`` → ``"5.00 %"``)."""
    return "–" if basis_points is None else f"{Decimal(int(basis_points)) / 100:.2f} %"
