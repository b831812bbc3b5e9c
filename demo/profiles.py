"""Deterministic energy profiles for the demo grid (pure: no Django, no clock).

Integers only: Wh per hour. Producers follow a solar curve, households have
morning and evening peaks, street lights burn at night. The numbers are tuned
so a sunny day's export runs about 10 % above import (the seed's grid loss).
"""

from __future__ import annotations

import random

# Relative solar output per UTC hour (0 at night, 1000 at noon).
SOLAR_PER_MILLE = [0, 0, 0, 0, 0, 0, 50, 180, 380, 580, 760, 900, 1000, 900, 760, 580, 380, 180, 50, 0, 0, 0, 0, 0]
# Household use per UTC hour, Wh: morning and evening peaks.
HOUSEHOLD_WH = [
    300, 250, 250, 250, 300, 450, 800, 1100, 900, 600, 500, 500,
    550, 500, 500, 600, 800, 1300, 1600, 1500, 1200, 900, 600, 400,
]  # fmt: skip


def household_wh(hour: int, scale_pct: int, rng: random.Random) -> int:
    """A household's import for one hour, jittered ±15 %."""
    base = HOUSEHOLD_WH[hour % 24] * scale_pct // 100
    return max(0, base + rng.randint(-base * 15 // 100, base * 15 // 100))


def solar_wh(hour: int, peak_wh: int, cloud_pct: int) -> int:
    """A solar array's export for one hour under ``cloud_pct`` % cloud."""
    return SOLAR_PER_MILLE[hour % 24] * peak_wh * (100 - cloud_pct) // 100_000


def street_light_wh(hour: int, watts: int) -> int:
    """A street light burns from 18:00 to 06:00 UTC."""
    return watts if hour % 24 >= 18 or hour % 24 < 6 else 0
