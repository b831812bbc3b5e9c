"""The simulated grid's power curves: integers, the shapes a utility expects
(sun by day, lights by night, households peaking morning and evening, cloudy
days lower), and a grid that exports about 10 % more than it imports."""

from hypothesis import given
from hypothesis import strategies as st

from firmware.sim.plan import MeterSpec, fleet_plan
from firmware.sim.profiles import (
    CLOUDY_PCT,
    DAY_MIN,
    GridModel,
    HouseholdCurve,
    SolarCurve,
    StreetLightCurve,
    Weather,
    energy_ws,
    household_w,
    solar_per_mille,
    solar_w,
    street_light_w,
    text_seed,
)

from .conftest import T0

DAY0 = T0 // 60  # 2026-01-01T00:00Z in Unix minutes
HOUR = 60


def hour_mean(power, hours, days=1):
    """Mean W of ``power(minute)`` over the given UTC hours of ``days`` days."""
    starts = [DAY0 + day * DAY_MIN + hour * HOUR for day in range(days) for hour in hours]
    values = [power(start + minute) for start in starts for minute in range(60)]
    return sum(values) // len(values)


def a_grid(batteries, households=30, roofs=6, lights=2):
    specs = [MeterSpec(f"M-H{n:03d}", "s", "household") for n in range(households)]
    specs += [MeterSpec(f"M-P{n:03d}", "s", "solar") for n in range(roofs)]
    specs += [MeterSpec(f"SL-{n}", "s", "light") for n in range(lights)]
    specs += [MeterSpec(f"B-{n}", "s", "battery") for n in range(batteries)]
    return specs


def day_energy_wh(curves, day=0):
    start_s = T0 + day * 86400
    import_ws = export_ws = 0
    for curve in curves:
        day_import, day_export = energy_ws(curve, start_s, start_s + 86400)
        import_ws, export_ws = import_ws + day_import, export_ws + day_export
    return import_ws // 3600, export_ws // 3600


@given(st.integers(min_value=0, max_value=10**8), st.integers(min_value=0, max_value=20_000))
def test_every_curve_gives_non_negative_integer_watts(minute, scale):
    model = GridModel()
    curves = [
        model.add(SolarCurve(scale, Weather(seed=3), seed=5)),
        model.add(HouseholdCurve(scale % 300, seed=7)),
        model.add(StreetLightCurve(scale % 500)),
    ]
    curves.append(model.battery())
    for curve in curves:
        import_w, export_w = curve.power(minute)
        assert type(import_w) is int and type(export_w) is int
        assert import_w >= 0 and export_w >= 0


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**5))
def test_energy_is_exact_and_additive_however_the_time_is_cut(start_s, length_s):
    curve = HouseholdCurve(100, seed=11)
    cut_s = start_s + length_s // 3
    whole = energy_ws(curve, start_s, start_s + length_s)
    first, second = energy_ws(curve, start_s, cut_s), energy_ws(curve, cut_s, start_s + length_s)
    assert whole == (first[0] + second[0], first[1] + second[1])
    assert all(type(value) is int for value in whole)


def test_the_sun_shines_by_day_only_and_peaks_at_noon():
    assert [solar_per_mille(DAY0 + hour * HOUR) for hour in (0, 3, 5, 18, 21, 23)] == [0] * 6
    assert solar_per_mille(DAY0 + 12 * HOUR) == 999  # the parabola in the middle of 12:00-12:01
    morning = [solar_per_mille(DAY0 + minute) for minute in range(6 * HOUR, 12 * HOUR)]
    assert morning == sorted(morning)
    assert solar_w(DAY0 + 12 * HOUR, 5000, 0) == 4995
    assert solar_w(DAY0 + 12 * HOUR, 5000, 60) == 1998


def test_street_lights_burn_at_night_only():
    night = [street_light_w(DAY0 + hour * HOUR + 30, 150) for hour in (*range(0, 6), *range(18, 24))]
    day = [street_light_w(DAY0 + hour * HOUR + 30, 150) for hour in range(6, 18)]
    assert night == [150] * 12
    assert day == [0] * 12


def test_households_peak_in_the_morning_and_more_in_the_evening():
    def power(minute):
        return household_w(minute, 100, seed=1)

    night, morning = hour_mean(power, range(1, 5), days=7), hour_mean(power, (7, 8), days=7)
    midday, evening = hour_mean(power, (12, 13, 14), days=7), hour_mean(power, (18, 19), days=7)
    assert morning > 2 * night
    assert morning > midday
    assert evening > morning
    # About 16 kWh a day for an average household, jitter included.
    daily_wh = energy_ws(HouseholdCurve(100, seed=1), T0, T0 + 86400)[0] // 3600
    assert 14_000 < daily_wh < 18_000


def test_a_cloudy_day_yields_less_than_a_clear_one():
    weather = Weather(seed=text_seed("demo"))
    days = range(60)
    clear = next(day for day in days if weather.day_pct(day + T0 // 86400) == 0)
    cloudy = next(day for day in days if weather.day_pct(day + T0 // 86400) >= CLOUDY_PCT)
    roof = SolarCurve(5000, weather, seed=text_seed("M-P001"))
    clear_wh = energy_ws(roof, T0 + clear * 86400, T0 + (clear + 1) * 86400)[1] // 3600
    cloudy_wh = energy_ws(roof, T0 + cloudy * 86400, T0 + (cloudy + 1) * 86400)[1] // 3600
    assert cloudy_wh < clear_wh * 65 // 100
    # A parabola over 12 hours holds two thirds of them at the peak: 40 kWh.
    assert 39_000 < clear_wh <= 40_000
    # Forced overcast (85 %, give or take the roof's own 5 points) does the same to any day.
    assert energy_ws(SolarCurve(5000, Weather(fixed_pct=85)), T0, T0 + 86400)[1] < clear_wh * 3600 // 4


def test_a_grid_without_batteries_exports_about_ten_percent_more_on_an_average_day():
    _, curves = fleet_plan(a_grid(batteries=0), Weather(fixed_pct=Weather.mean_pct()), T0)
    import_wh, export_wh = day_energy_wh(curves.values())
    assert 1.05 < export_wh / import_wh < 1.15
    # Not hour by hour: nothing exports at night.
    assert sum(curve.power(DAY0 + 2 * HOUR)[1] for curve in curves.values()) == 0


def test_with_batteries_every_minute_exports_ten_percent_more_than_it_imports():
    _, curves = fleet_plan(a_grid(batteries=2), Weather(seed=9), T0)
    for minute in range(DAY0, DAY0 + DAY_MIN, 7):
        powers = [curve.power(minute) for curve in curves.values()]
        total_import, total_export = sum(p[0] for p in powers), sum(p[1] for p in powers)
        assert abs(total_export - total_import * 110 // 100) <= 3, minute
    import_wh, export_wh = day_energy_wh(curves.values())
    assert round(export_wh / import_wh, 3) == 1.1


def test_batteries_charge_from_the_midday_sun_and_discharge_in_the_evening():
    _, curves = fleet_plan(a_grid(batteries=2), Weather(fixed_pct=0), T0)
    battery = curves["B-0"]
    noon, evening, night = battery.power(DAY0 + 12 * HOUR), battery.power(DAY0 + 19 * HOUR), battery.power(DAY0 + 2)
    assert noon[0] > 0 and noon[1] == 0  # charging: it imports
    assert evening[0] == 0 and evening[1] > 0  # discharging: it exports
    assert night[1] > 0
    # The two batteries share the work to the watt.
    assert abs(curves["B-1"].power(DAY0 + 19 * HOUR)[1] - evening[1]) <= 1


def test_the_same_seed_gives_the_same_grid():
    first = fleet_plan(a_grid(batteries=1), Weather(seed=4), T0)[1]
    second = fleet_plan(a_grid(batteries=1), Weather(seed=4), T0)[1]
    for minute in range(DAY0, DAY0 + DAY_MIN, 37):
        assert [c.power(minute) for c in first.values()] == [c.power(minute) for c in second.values()]


def test_fixed_sizes_are_kept_and_roofs_are_sized_around_them():
    specs = [MeterSpec("M-H1", "s", "household", scale=200), MeterSpec("SL-1", "s", "light", scale=90)]
    specs += [MeterSpec("M-P1", "s", "solar", scale=3000), MeterSpec("M-P2", "s", "solar")]
    _, curves = fleet_plan(specs, Weather(fixed_pct=Weather.mean_pct()), T0)
    assert curves["M-P1"].peak_w == 3000
    assert curves["SL-1"].watts == 90 and curves["M-H1"].scale_pct == 200
    import_wh, export_wh = day_energy_wh(curves.values())
    assert 1.05 < export_wh / import_wh < 1.15
