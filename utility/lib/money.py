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

    Each share is ``floor(total * w / W)``; the units left over go one each to
    the largest fractional remainders, ties to the lower key (string order).
    The shares always sum to ``total`` exactly. ``total`` and every weight are
    non-negative integers and ``W = sum(weights) > 0``.
    """
    if len(weights) != len(keys):
        raise ValueError("weights and keys must have the same length")
    weight_sum = sum(weights)
    if total < 0 or weight_sum <= 0 or any(w < 0 for w in weights):
        raise ValueError("ratio_split needs total >= 0, weights >= 0 and a positive sum")
    shares: list[int] = []
    remainders: list[tuple[int, str, int]] = []
    for index, weight in enumerate(weights):
        share, remainder = divmod(total * weight, weight_sum)
        shares.append(share)
        if remainder:
            # Sorted below: largest remainder first, then lower key.
            remainders.append((-remainder, keys[index], index))
    leftover = total - sum(shares)
    if leftover:
        remainders.sort()
        for _, _, index in remainders[:leftover]:
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
