"""Display filters: µk as coins, cents as money (display only, never math)."""

from __future__ import annotations

from django import template

from utility.lib.money import format_uk

from ..pricing import format_cents

register = template.Library()


@register.filter
def coins(amount_uk: int) -> str:
    """``2721818`` → ``"2.721818"``."""
    return format_uk(int(amount_uk))


@register.filter
def money(amount_cents: int, currency: str) -> str:
    """``{{ topup.amount_cents|money:topup.currency }}`` → ``"10.50 USD"``."""
    return format_cents(int(amount_cents), str(currency))
