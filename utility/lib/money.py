"""Money in integer micro-coins (µk). Pure: no Django.

1 k (coin) = 1,000,000 µk. Floats never touch money; ``Decimal`` is used
only to parse and display.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

UK_PER_COIN = 1_000_000


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer ``numerator / denominator`` rounded half up, for numerator >= 0.

    Settlement quantities are never negative, so "half up" and "half away
    from zero" agree; a negative numerator is refused rather than guessed.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator < 0:
        raise ValueError("numerator must not be negative")
    return (2 * numerator + denominator) // (2 * denominator)


def ratio_split(total: int, weights: Sequence[int], keys: Sequence[str]) -> list[int]:
    """Split ``total`` µk over ``weights`` by the largest-remainder method.

    Each share is ``floor(total * w / W)`` with ``W = sum(weights)``; the
    ``total - Σ shares`` units left over (fewer than the number of non-zero
    remainders) go one each to the largest remainders ``total * w mod W``,
    ties to the lower key in string order, then to the earlier position. So
    the shares always sum to ``total`` exactly and each is within one unit
    of its exact rational share. ``total`` and every weight are non-negative
    integers (``bool`` refused) and ``W > 0``; otherwise ``ValueError``.
    """
    if len(weights) != len(keys):
        raise ValueError("weights and keys must have the same length")
    if type(total) is not int or not set(map(type, weights)) <= {int}:
        raise ValueError("ratio_split needs integer total and weights")
    weight_sum = sum(weights)
    if total < 0 or weight_sum <= 0 or min(weights) < 0:
        raise ValueError("ratio_split needs total >= 0, weights >= 0 and a positive sum")
    shares = [total * weight // weight_sum for weight in weights]
    leftover = total - sum(shares)
    if leftover:
        remainders = [total * weight % weight_sum for weight in weights]
        # Two stable sorts instead of one over (remainder, key) tuples: order
        # by key, then by remainder, largest first; equal remainders keep key
        # order. Twice as fast at 10,000 producers, and no tuple per producer.
        ranked = sorted(range(len(weights)), key=keys.__getitem__)
        ranked.sort(key=remainders.__getitem__, reverse=True)
        for index in ranked[:leftover]:
            shares[index] += 1
    assert sum(shares) == total, "ratio_split lost or created money"
    return shares


def coins_to_uk(text: str) -> int:
    """Parse a coin amount such as ``"2.721818"`` into µk; refuse sub-µk precision."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {text!r}")
    scaled = value * UK_PER_COIN
    if scaled != scaled.to_integral_value():
        raise ValueError(f"more precise than 1 µk: {text!r}")
    return int(scaled)


def format_uk(amount_uk: int) -> str:
    """Display µk as coins with six decimals, e.g. ``2721818`` → ``"2.721818"``."""
    return str((Decimal(amount_uk) / UK_PER_COIN).quantize(Decimal("0.000001")))
