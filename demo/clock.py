"""The demo's simulated clock: one clock for the platform and the fleet.

Production reads the wall clock (``utility.clock``'s default). The demo
installs a ``DemoClock`` instead: simulated time that runs ``speed`` times
faster than real time (180×: an hourly interval every 20 s) and that the grid
page's "advance one interval" button moves (``demo_clock_advance``). Every
edge of the platform reads it through ``utility.clock.now()``; the in-process
simulated fleet reads the very same object through ``DemoClock.sim`` (the
firmware's clock interface: integer Unix seconds, and *real* monotonic time
for its ack timeouts and reconnect backoff, which must not speed up).

Processes that must agree (compose: web, worker, beat, ingest, simulator)
each call ``demo_clock_start(state_path=...)`` with the same file: the first
one creates it, the others join, and an advance in any of them moves them all.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from firmware.sim.clock import SimClock
from utility import clock as platform_clock

SECONDS_PER_INTERVAL = 20  # real seconds per simulated interval in the demo


def speed_for(interval_s: int, seconds_per_interval: float = SECONDS_PER_INTERVAL) -> float:
    """The speed at which one interval passes every ``seconds_per_interval`` real seconds."""
    if seconds_per_interval <= 0:
        raise ValueError("seconds_per_interval must be positive")
    return interval_s / seconds_per_interval


class DemoClock:
    """The platform's view of a ``SimClock``: UTC-aware datetimes, and
    ``advance`` in whole grid intervals. Thread-safe (the ``SimClock`` is)."""

    def __init__(self, sim: SimClock, interval_s: int = 3600) -> None:
        if interval_s < 1:
            raise ValueError("interval_s must be positive")
        self.sim = sim
        self.interval_s = interval_s

    def now(self) -> datetime:
        """The simulated instant, UTC-aware (what ``utility.clock.now()`` returns)."""
        return datetime.fromtimestamp(self.sim.now_exact(), UTC)

    def advance(self, intervals: int = 1) -> datetime:
        """Jump ``intervals`` whole grid intervals ahead; returns the new instant.
        Each crossed boundary closes an interval for every simulated meter."""
        if type(intervals) is not int or intervals < 1:
            raise ValueError("advance by a whole number of intervals, at least 1")
        return datetime.fromtimestamp(self.sim.advance(intervals * self.interval_s), UTC)

    @property
    def speed(self) -> float:
        return self.sim.speed

    def next_interval_in_s(self) -> float | None:
        """Real seconds until the current interval ends (None while stopped)."""
        speed = self.sim.speed
        if not speed:
            return None
        return (self.interval_s - self.sim.now_exact() % self.interval_s) / speed

    def set_speed(self, speed: float) -> None:
        """Simulated seconds per real second from now on; 0 stops the clock."""
        self.sim.set_speed(speed)


_lock = threading.Lock()
_installed: DemoClock | None = None


def demo_clock_start(
    *,
    start: datetime | None = None,
    speed: float | None = None,
    interval_s: int = 3600,
    state_path: str | None = None,
) -> DemoClock:
    """Create the demo clock and install it as the platform's clock.

    ``start`` (UTC-aware; default now) and ``speed`` (default: an interval
    every 20 s) are ignored when ``state_path`` names an existing clock file:
    this process then joins the clock the others already run.
    """
    if start is not None and start.utcoffset() is None:
        raise ValueError("start must be UTC-aware")
    speed = speed_for(interval_s) if speed is None else speed
    sim = SimClock(None if start is None else start.timestamp(), speed, state_path=state_path)
    demo = DemoClock(sim, interval_s)
    global _installed
    with _lock:
        _installed = demo
        platform_clock.clock_install(demo.now)
    return demo


def demo_clock() -> DemoClock | None:
    """The installed demo clock; None in production (the wall clock)."""
    return _installed


def demo_clock_advance(intervals: int = 1) -> datetime:
    """The grid page's "advance one interval": move the demo clock ahead.
    Raises ``RuntimeError`` when no demo clock runs (production time does not move)."""
    demo = _installed
    if demo is None:
        raise RuntimeError("no demo clock is running: only the demo's time can be advanced")
    return demo.advance(intervals)


def demo_clock_stop() -> None:
    """Back to the wall clock."""
    global _installed
    with _lock:
        _installed = None
        platform_clock.clock_reset()
