"""Power curves of a simulated grid: pure functions of time, integer watts.

Every curve is constant within a UTC minute, so the energy of any stretch of
time is an exact integer number of watt-seconds (``energy_ws``), whatever the
step a simulator ticks with. Randomness is a hash of (seed, day, block): the
same seed gives the same grid, in any order of evaluation, in any process.

- **Solar** (producers): a parabola from 06:00 to 18:00 UTC peaking at noon,
  dimmed by the day's clouds (``Weather``): some days are clear, some overcast.
- **Household** (consumers): a morning peak (~07:00) and a bigger evening peak
  (~18:00), jittered per quarter hour.
- **Street light**: on from 18:00 to 06:00 UTC, off by day.
- **Battery** (prosumers): see ``GridModel``: grid-forming storage that
  charges from the midday surplus and discharges in the evening and at night,
  so that every minute's export is ``loss_pct`` above the import (the seed's
  ~10 % grid loss: the line losses are real energy someone must feed in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MINUTE_S = 60
DAY_MIN = 1440
SUNRISE_MIN = 6 * 60
SUNSET_MIN = 18 * 60
DAYLIGHT_MIN = SUNSET_MIN - SUNRISE_MIN
BLOCK_MIN = 15  # jitter and passing clouds change every quarter hour

# Average household power per UTC hour, W (a day's use is ~16 kWh at 100 %).
HOUSEHOLD_W = (
    300, 250, 250, 250, 300, 450, 800, 1100, 900, 600, 500, 500,
    550, 500, 500, 600, 800, 1300, 1600, 1500, 1200, 900, 600, 400,
)  # fmt: skip
HOUSEHOLD_JITTER_PCT = 20
# A day's cloud cover, %, drawn per day: 3 clear days in 8, 3 overcast.
CLOUD_CHOICES_PCT = (0, 0, 0, 10, 20, 45, 70, 85)
CLOUDY_PCT = 45  # at or above this, a day counts as cloudy
VOLTS_NOMINAL_DV = 2300


def mix(*values: int) -> int:
    """A 64-bit hash of non-negative integers (splitmix64 chained): the
    simulator's only source of randomness, so any evaluation order agrees."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 29
    return state


def text_seed(text: str) -> int:
    """A stable seed from a meter id (Python's ``hash`` of a str changes per process)."""
    seed = 0
    for char in text:
        seed = mix(seed, ord(char))
    return seed


def solar_per_mille(minute: int) -> int:
    """Clear-sky output at ``minute`` (Unix minutes), per mille of the peak:
    a parabola over daylight, 1000 at noon UTC, 0 at night."""
    of_day = minute % DAY_MIN
    if not SUNRISE_MIN <= of_day < SUNSET_MIN:
        return 0
    # The parabola's value at the middle of the minute, in half-minutes.
    half = 2 * (of_day - SUNRISE_MIN) + 1
    span = 2 * DAYLIGHT_MIN
    return 4000 * half * (span - half) // (span * span)


@dataclass(frozen=True, slots=True)
class Weather:
    """The sky over the grid: a cloud cover per day (``fixed_pct`` forces one
    for every day); cloudy days also get passing clouds per quarter hour."""

    seed: int = 0
    fixed_pct: int | None = None

    def day_pct(self, day: int) -> int:
        if self.fixed_pct is not None:
            return self.fixed_pct
        return CLOUD_CHOICES_PCT[mix(self.seed, day) % len(CLOUD_CHOICES_PCT)]

    def cloud_pct(self, minute: int) -> int:
        """Cloud cover, %, in ``minute`` (0 clear .. 95)."""
        base = self.day_pct(minute // DAY_MIN)
        if base < CLOUDY_PCT // 2 or self.fixed_pct is not None:
            return base
        swing = mix(self.seed, minute // BLOCK_MIN, 7) % 31 - 15
        return max(0, min(95, base + swing))

    @staticmethod
    def mean_pct() -> int:
        """The climate's average cover, %, which the roofs are sized for (a
        forced overcast day does not get bigger roofs)."""
        return sum(CLOUD_CHOICES_PCT) // len(CLOUD_CHOICES_PCT)


def solar_w(minute: int, peak_w: int, cloud_pct: int) -> int:
    """A roof of ``peak_w`` (its output at a clear noon) under ``cloud_pct`` % cloud."""
    return peak_w * solar_per_mille(minute) * (100 - cloud_pct) // 100_000


def household_w(minute: int, scale_pct: int, seed: int) -> int:
    """A household at ``scale_pct`` % of the average one: the hourly curve,
    interpolated per minute, jittered by up to ±20 % per quarter hour."""
    of_day = minute % DAY_MIN
    hour, into = divmod(of_day, 60)
    low, high = HOUSEHOLD_W[hour], HOUSEHOLD_W[(hour + 1) % 24]
    base = (low * (60 - into) + high * into) // 60 * scale_pct // 100
    jitter = mix(seed, minute // BLOCK_MIN) % (2 * HOUSEHOLD_JITTER_PCT + 1) - HOUSEHOLD_JITTER_PCT
    return max(0, base * (100 + jitter) // 100)


def street_light_w(minute: int, watts: int) -> int:
    """A street light: ``watts`` from 18:00 to 06:00 UTC, nothing by day."""
    of_day = minute % DAY_MIN
    return 0 if SUNRISE_MIN <= of_day < SUNSET_MIN else watts


def volts_dv(minute: int, seed: int) -> int:
    """Line voltage in decivolts: 230 V ± 6 V, changing each minute."""
    return VOLTS_NOMINAL_DV + mix(seed, minute, 3) % 121 - 60


# -- curves: what one meter's physical import and export are ------------------


class Curve:
    """One meter's power: ``power(minute) -> (import_w, export_w)``, integers ≥ 0."""

    kind = "curve"

    def power(self, minute: int) -> tuple[int, int]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class SolarCurve(Curve):
    peak_w: int
    weather: Weather
    seed: int = 0
    kind = "solar"

    def power(self, minute: int) -> tuple[int, int]:
        # Each roof sees the grid's sky, give or take 5 points (local haze).
        cloud = self.weather.cloud_pct(minute)
        if cloud:
            cloud = max(0, min(95, cloud + self.seed % 11 - 5))
        return 0, solar_w(minute, self.peak_w, cloud)


@dataclass(frozen=True, slots=True)
class HouseholdCurve(Curve):
    scale_pct: int
    seed: int = 0
    kind = "household"

    def power(self, minute: int) -> tuple[int, int]:
        return household_w(minute, self.scale_pct, self.seed), 0


@dataclass(frozen=True, slots=True)
class StreetLightCurve(Curve):
    watts: int
    kind = "light"

    def power(self, minute: int) -> tuple[int, int]:
        return street_light_w(minute, self.watts), 0


def energy_ws(curve: Curve, start_s: int, end_s: int) -> tuple[int, int]:
    """Exact (import, export) watt-seconds of ``curve`` over ``[start_s, end_s)``."""
    import_ws = export_ws = 0
    moment = start_s
    while moment < end_s:
        minute = moment // MINUTE_S
        until = min(end_s, (minute + 1) * MINUTE_S)
        import_w, export_w = curve.power(minute)
        import_ws += import_w * (until - moment)
        export_ws += export_w * (until - moment)
        moment = until
    return import_ws, export_ws


# -- the grid's balance: batteries -------------------------------------------


@dataclass(eq=False)
class GridModel:
    """The physical grid: every meter's curve, plus batteries that balance it.

    Each minute the batteries together make the grid's total export exactly
    ``(100 + loss_pct) %`` of its total import (their own charging included):
    with surplus sun they charge (import), short of it they discharge
    (export). Without a battery nothing balances the grid and the ratio holds
    only over a day of average weather (``fleet_plan`` sizes the roofs for it).
    Battery capacity is not bounded: the roofs are sized so an average day
    leaves the batteries where they began.
    """

    loss_pct: int = 10
    curves: list[Curve] = field(default_factory=list)
    battery_count: int = 0
    _cache: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add(self, curve: Curve) -> Curve:
        self.curves.append(curve)
        self._cache.clear()
        return curve

    def battery(self) -> BatteryCurve:
        battery = BatteryCurve(self, self.battery_count)
        self.battery_count += 1
        self._cache.clear()
        return battery

    def others_w(self, minute: int) -> tuple[int, int]:
        """Total (import, export) W of every non-battery meter in ``minute``."""
        cached = self._cache.get(minute)
        if cached is None:
            if len(self._cache) > 4 * DAY_MIN:
                self._cache.clear()
            total_import = total_export = 0
            for curve in self.curves:
                import_w, export_w = curve.power(minute)
                total_import += import_w
                total_export += export_w
            cached = self._cache[minute] = (total_import, total_export)
        return cached

    def battery_w(self, minute: int, index: int) -> tuple[int, int]:
        """Battery ``index``'s (charge, discharge) W: an equal share of what
        balances the grid, the remainder watt by watt to the first ones."""
        total_import, total_export = self.others_w(minute)
        ratio = 100 + self.loss_pct
        short_w = (total_import * ratio - total_export * 100) // 100
        if short_w > 0:
            return 0, _share(short_w, self.battery_count, index)
        surplus_w = (total_export * 100 - total_import * ratio) // ratio
        return _share(max(0, surplus_w), self.battery_count, index), 0


def _share(total: int, count: int, index: int) -> int:
    whole, rest = divmod(total, count)
    return whole + (1 if index < rest else 0)


@dataclass(frozen=True, eq=False, slots=True)
class BatteryCurve(Curve):
    model: GridModel
    index: int
    kind = "battery"

    def power(self, minute: int) -> tuple[int, int]:
        return self.model.battery_w(minute, self.index)
