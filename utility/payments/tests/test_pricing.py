"""Coins ↔ money, rounded down, with the rounding shown (no database)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from utility.payments.pricing import CoinPrice, cents_for_coins, topup_quote, withdrawal_quote

USD_3 = CoinPrice("demo", 300, "usd")


def test_ten_dollars_at_three_a_coin_buys_3_333333_coins_and_drops_a_third_of_a_micro_coin():
    quote = topup_quote(1_000, USD_3)
    assert (quote.coins_uk, quote.coins, quote.amount, quote.rounded_off) == (
        3_333_333,
        "3.333333",
        "10.00 USD",
        "0.33",
    )


def test_an_exact_price_drops_nothing():
    quote = topup_quote(1_000, CoinPrice("demo", 100, "eur"))
    assert (quote.coins_uk, quote.rounded_off_num, quote.amount) == (10_000_000, 0, "10.00 EUR")


def test_withdrawing_rounds_the_money_down_to_a_whole_cent():
    quote = withdrawal_quote(3_333_333, USD_3)  # worth 999.9999 cents
    assert (quote.amount_cents, quote.amount, quote.rounded_off) == (999, "9.99 USD", "1.00")
    assert cents_for_coins(40_000_000, 300) == 12_000


@given(st.integers(0, 10**9), st.integers(1, 10**6))
def test_coins_are_the_exact_quotient_rounded_down(amount_cents, price_cents):
    quote = topup_quote(amount_cents, CoinPrice("g", price_cents, "usd"))
    exact = Fraction(amount_cents * 1_000_000, price_cents)
    assert quote.coins_uk <= exact < quote.coins_uk + 1
    assert exact == quote.coins_uk + Fraction(quote.rounded_off_num, price_cents)


@given(st.integers(0, 10**12), st.integers(1, 10**6))
def test_buying_back_what_a_withdrawal_pays_never_gives_more_coins(amount_uk, price_cents):
    paid = withdrawal_quote(amount_uk, CoinPrice("g", price_cents, "usd")).amount_cents
    assert topup_quote(paid, CoinPrice("g", price_cents, "usd")).coins_uk <= amount_uk
