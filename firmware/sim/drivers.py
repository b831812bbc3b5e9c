"""The drivers a simulated meter runs on: its energy source and its relay.

``CurveSource`` has the firmware's energy-source contract (``drivers.py``) and
integrates a ``profiles`` curve exactly; ``SimRelay`` remembers the supply
switch, and ``RelayGate`` makes an open switch cut the meter's power.
"""

from __future__ import annotations

from .profiles import MINUTE_S, Curve, energy_ws, volts_dv


class CurveSource:
    """An energy source (``drivers.py``'s contract) that integrates a curve
    exactly: watt-seconds between reads, whole Wh reported, the rest carried."""

    def __init__(self, clock, curve: Curve, seed: int = 0) -> None:
        self.clock = clock
        self.curve = curve
        self.seed = seed
        self._last: int | None = None
        self._import_ws = 0
        self._export_ws = 0

    def read(self) -> tuple[int, int, int | None]:
        now = self.clock.now()
        if now is None:
            return 0, 0, None
        volts = volts_dv(now // MINUTE_S, self.seed)
        if self._last is None or now <= self._last:
            self._last = now if self._last is None else self._last
            return 0, 0, volts
        import_ws, export_ws = energy_ws(self.curve, self._last, now)
        self._last = now
        import_wh, self._import_ws = divmod(self._import_ws + import_ws, 3600)
        export_wh, self._export_ws = divmod(self._export_ws + export_ws, 3600)
        return import_wh, export_wh, volts


class SimRelay:
    """The supply switch of a simulated meter: while open (a ``disconnect``
    decision) its household, roof or battery neither imports nor exports."""

    def __init__(self) -> None:
        self.closed: bool | None = None

    def set(self, closed) -> None:
        self.closed = bool(closed)


class RelayGate(Curve):
    """``inner``'s power while ``relay`` is closed (or not yet set), else none."""

    def __init__(self, inner: Curve, relay: SimRelay) -> None:
        self.inner, self.relay, self.kind = inner, relay, inner.kind

    def power(self, minute: int) -> tuple[int, int]:
        return (0, 0) if self.relay.closed is False else self.inner.power(minute)
