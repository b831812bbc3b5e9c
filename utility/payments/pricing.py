"""Coins ↔ money at a grid's coin price. Pure: no Django.

Money is in the currency's smallest unit (cents for usd/eur); coins in µk.
Both directions round down, against the platform never the resident's
surprise: the rounding is shown before anything is paid or held.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from utility.lib.money import UK_PER_COIN, format_uk


@dataclass(frozen=True, slots=True)
class CoinPrice:
    """What one coin costs on a resident's grid."""

    grid_slug: str
    coin_price_cents: int
    currency: str


def coins_for_cents(amount_cents: int, coin_price_cents: int) -> int:
    """µk bought by ``amount_cents``: ``amount × 1,000,000 ÷ price``, rounded down."""
    if amount_cents < 0 or coin_price_cents <= 0:
        raise ValueError("amount must be >= 0 and the coin price > 0")
    return amount_cents * UK_PER_COIN // coin_price_cents


def cents_for_coins(amount_uk: int, coin_price_cents: int) -> int:
    """Cents paid out for ``amount_uk``: ``µk × price ÷ 1,000,000``, rounded down."""
    if amount_uk < 0 or coin_price_cents <= 0:
        raise ValueError("amount must be >= 0 and the coin price > 0")
    return amount_uk * coin_price_cents // UK_PER_COIN


def format_cents(amount_cents: int, currency: str) -> str:
    """``1050, "usd"`` → ``"10.50 USD"`` (two-decimal currencies)."""
    return f"{Decimal(amount_cents) / 100:.2f} {currency.upper()}"


@dataclass(frozen=True, slots=True)
class TopUpQuote:
    """What a payment of ``amount_cents`` buys; shown before paying."""

    amount_cents: int
    price: CoinPrice
    coins_uk: int
    # The exact coins are coins_uk + rounded_off_num / coin_price_cents µk.
    rounded_off_num: int

    @property
    def rounded_off(self) -> str:
        """The µk fraction dropped by rounding down, for display (e.g. ``"0.33"``)."""
        exact = Decimal(self.rounded_off_num) / Decimal(self.price.coin_price_cents)
        return str(exact.quantize(Decimal("0.01")))

    @property
    def coins(self) -> str:
        return format_uk(self.coins_uk)

    @property
    def amount(self) -> str:
        return format_cents(self.amount_cents, self.price.currency)


def topup_quote(amount_cents: int, price: CoinPrice) -> TopUpQuote:
    """Coins for ``amount_cents`` at ``price``, with the part rounded off."""
    numerator = amount_cents * UK_PER_COIN
    return TopUpQuote(
        amount_cents=amount_cents,
        price=price,
        coins_uk=coins_for_cents(amount_cents, price.coin_price_cents),
        rounded_off_num=numerator % price.coin_price_cents,
    )


@dataclass(frozen=True, slots=True)
class WithdrawalQuote:
    """What withdrawing ``amount_uk`` pays out; shown before asking."""

    amount_uk: int
    price: CoinPrice
    amount_cents: int
    # The exact value is amount_cents + rounded_off_num / 1,000,000 cents.
    rounded_off_num: int

    @property
    def rounded_off(self) -> str:
        """The fraction of a cent dropped by rounding down (e.g. ``"0.42"``)."""
        return str((Decimal(self.rounded_off_num) / UK_PER_COIN).quantize(Decimal("0.01")))

    @property
    def coins(self) -> str:
        return format_uk(self.amount_uk)

    @property
    def amount(self) -> str:
        return format_cents(self.amount_cents, self.price.currency)


def withdrawal_quote(amount_uk: int, price: CoinPrice) -> WithdrawalQuote:
    """Money for ``amount_uk`` at ``price``, with the fraction of a cent dropped."""
    return WithdrawalQuote(
        amount_uk=amount_uk,
        price=price,
        amount_cents=cents_for_coins(amount_uk, price.coin_price_cents),
        rounded_off_num=amount_uk * price.coin_price_cents % UK_PER_COIN,
    )
