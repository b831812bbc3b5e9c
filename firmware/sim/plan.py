"""Which curve each simulated meter gets, and how big the roofs are.

``MeterSpec`` is one meter of a fleet (its id, secret, profile, and where to
resume it); ``fleet_plan`` turns a list of them into a ``GridModel`` with a
curve per meter, sizing the solar roofs for the grid's ~10 % loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .profiles import (
    DAY_MIN,
    MINUTE_S,
    Curve,
    GridModel,
    HouseholdCurve,
    SolarCurve,
    StreetLightCurve,
    Weather,
    energy_ws,
    solar_per_mille,
    text_seed,
)

PROFILES = ("solar", "household", "light", "battery")
LIGHT_W = 150


def profile_for(kind: str, public: bool = False) -> str:
    """The curve a registered meter gets: producer → solar, prosumer →
    battery, a public consumer (street light) → light, other consumers → household."""
    if kind == "producer":
        return "solar"
    if kind == "prosumer":
        return "battery"
    if kind == "consumer":
        return "light" if public else "household"
    raise ValueError(f"unknown meter kind {kind!r}")


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One simulated meter. ``scale`` is the solar peak W, the household's
    % of an average one, or the light's W; None lets ``fleet_plan`` choose.
    ``seq``/``import_total_wh``/``export_total_wh`` resume a meter the backend
    already knows (its next seq and its registers); they seed an empty journal."""

    meter: str
    secret: str
    profile: str
    scale: int | None = None
    seq: int = 1
    import_total_wh: int = 0
    export_total_wh: int = 0

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"{self.meter}: profile must be one of {', '.join(PROFILES)}, not {self.profile!r}")
        for name in ("seq", "import_total_wh", "export_total_wh"):
            value = getattr(self, name)
            if type(value) is not int or value < (1 if name == "seq" else 0):
                raise ValueError(f"{self.meter}: {name} must be an integer ≥ {1 if name == 'seq' else 0}")


def fleet_plan(
    specs: Iterable[MeterSpec],
    weather: Weather,
    day_start_s: int,
    loss_pct: int = 10,
    gate: Callable[[str, Curve], Curve] | None = None,
) -> tuple[GridModel, dict[str, Curve]]:
    """Each meter's physical curve, in a ``GridModel``. Roofs without a
    ``scale`` are sized so that on a day of average weather the grid exports
    ``loss_pct`` % more than it imports (batteries then end the day about where
    they began). ``gate(meter, curve)`` may wrap each curve (a relay)."""
    gate = gate or (lambda meter, curve: curve)
    model = GridModel(loss_pct=loss_pct)
    curves: dict[str, Curve] = {}
    roofs: list[tuple[MeterSpec, int]] = []
    for spec in specs:
        seed = text_seed(spec.meter)
        if spec.profile == "household":
            curves[spec.meter] = model.add(gate(spec.meter, HouseholdCurve(spec.scale or 60 + seed % 81, seed)))
        elif spec.profile == "light":
            curves[spec.meter] = model.add(gate(spec.meter, StreetLightCurve(spec.scale or LIGHT_W)))
        elif spec.profile == "battery":
            curves[spec.meter] = gate(spec.meter, model.battery())
        elif spec.scale is not None:
            curves[spec.meter] = model.add(gate(spec.meter, SolarCurve(spec.scale, weather, seed)))
        else:
            roofs.append((spec, 4 + seed % 4))  # roofs of 4 to 7 relative sizes
    if roofs:
        day_end_s = day_start_s + DAY_MIN * MINUTE_S
        import_ws = export_ws = 0
        for curve in model.curves:
            day_import_ws, day_export_ws = energy_ws(curve, day_start_s, day_end_s)
            import_ws, export_ws = import_ws + day_import_ws, export_ws + day_export_ws
        # Watt-seconds one watt of peak yields on an average day, × 100_000.
        yield_ws = sum(solar_per_mille(minute) for minute in range(DAY_MIN)) * (100 - weather.mean_pct()) * MINUTE_S
        wanted_ws = max(0, import_ws * (100 + loss_pct) // 100 - export_ws)
        weights = sum(weight for _, weight in roofs)
        for spec, weight in roofs:
            peak_w = max(100, wanted_ws * weight * 100_000 // (yield_ws * weights))
            curves[spec.meter] = model.add(gate(spec.meter, SolarCurve(peak_w, weather, text_seed(spec.meter))))
    return model, curves
