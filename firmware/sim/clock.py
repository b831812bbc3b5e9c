"""Simulated time for a fleet (and, through ``demo/clock.py``, for the platform).

``SimClock`` runs ``speed`` times faster than real time from a start instant;
``advance(seconds)`` jumps ahead (the grid page's "advance one interval");
speed 0 stops it (only ``advance`` moves it), speed 1 from now is the wall
clock. It never goes back. It has the firmware's clock interface (``now()``
integer Unix seconds, ``status()``, ``monotonic()``), and ``monotonic()`` is
*real* time: a meter's ack timeout and reconnect backoff are about the network,
which does not speed up with the simulation.

Thread-safe. With ``state_path`` several processes share one clock (the demo's
web server, worker, ingest and simulator): the anchors live in a small JSON
file that ``advance``/``set_speed`` rewrite atomically under a lock file, and
readers pick up within ``RELOAD_S`` of real time.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: a shared clock file is then not locked
    fcntl = None

RELOAD_S = 0.05
STATE_VERSION = 1


class SimClock:
    """Simulated Unix time: ``anchor_sim + (real() - anchor_real) × speed``.

    ``start_s`` (Unix seconds, may be fractional; default now) and ``speed``
    (simulated seconds per real second, ≥ 0). ``real`` is the real clock in
    Unix seconds (a test may pass its own). ``start_s`` is where this clock
    began (for a clock joined through ``state_path``: where it was when joined).
    """

    def __init__(
        self,
        start_s: float | None = None,
        speed: float = 1.0,
        *,
        state_path: str | os.PathLike[str] | None = None,
        real: Callable[[], float] = time.time,
    ) -> None:
        _speed_check(speed)
        self._real = real
        self._lock = threading.Lock()
        now_real = real()
        self._anchor_real = now_real
        self._anchor_sim = float(now_real if start_s is None else start_s)
        self._speed = float(speed)
        self._last = self._anchor_sim
        self._path = Path(state_path) if state_path is not None else None
        self._seen: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.joined = False  # True when it took over a clock another process started
        self.start_s = self._anchor_sim
        if self._path is not None:
            self._join()

    # -- reading -------------------------------------------------------------

    def now_exact(self) -> float:
        """Simulated Unix seconds, fractional; never below a value returned before."""
        with self._lock:
            real = self._real()
            self._reload(real)
            value = self._anchor_sim + (real - self._anchor_real) * self._speed
            if value < self._last:
                value = self._last  # the real clock stepped back: hold, never go back
            self._last = value
            return value

    def now(self) -> int:
        """Whole simulated Unix seconds (the firmware's clock interface)."""
        return int(self.now_exact())

    def status(self) -> str:
        return "ntp"

    def monotonic(self) -> float:
        """Real monotonic seconds: ack timeouts and backoff run in real time."""
        return time.monotonic()

    @property
    def speed(self) -> float:
        with self._lock:
            self._reload(self._real())
            return self._speed

    # -- moving it ---------------------------------------------------------

    def advance(self, seconds: float) -> float:
        """Jump ``seconds`` (≥ 0) ahead; returns the new simulated time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        return self._change(lambda now: (now + seconds, None))

    def set_speed(self, speed: float) -> float:
        """Run at ``speed`` from now on (0 stops it); returns the simulated time."""
        _speed_check(speed)
        return self._change(lambda now: (now, float(speed)))

    def _change(self, change: Callable[[float], tuple[float, float | None]]) -> float:
        with self._lock, self._file_lock():
            real = self._real()
            self._seen = None  # under the file lock: read what the others wrote last
            self._reload(real, force=True)
            current = max(self._last, self._anchor_sim + (real - self._anchor_real) * self._speed)
            new_sim, new_speed = change(current)
            self._anchor_real, self._anchor_sim = real, new_sim
            if new_speed is not None:
                self._speed = new_speed
            self._last = new_sim
            self._save()
            return new_sim

    # -- sharing through a file ----------------------------------------------

    def _join(self) -> None:
        """Use the state file if it exists, else create it with our anchors."""
        assert self._path is not None
        with self._lock, self._file_lock():
            if self._path.exists():
                self.joined = True
            else:
                self._save()
            real = self._real()
            self._reload(real, force=True)
            # Our own start does not count once we joined a running clock.
            self._last = self._anchor_sim + (real - self._anchor_real) * self._speed
            self.start_s = self._last

    @contextlib.contextmanager
    def _file_lock(self):
        if self._path is None or fcntl is None:
            yield
            return
        with open(f"{self._path}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _reload(self, real: float, force: bool = False) -> None:
        if self._path is None or (not force and real - self._checked < RELOAD_S and real >= self._checked):
            return
        self._checked = real
        try:
            info = self._path.stat()
        except FileNotFoundError:
            return
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return
        try:
            state = json.loads(self._path.read_text())
            anchor_real, anchor_sim, speed = (float(state[key]) for key in ("anchor_real", "anchor_sim", "speed"))
        except (OSError, ValueError, KeyError, TypeError):
            return  # a torn or foreign file: keep what we had
        self._seen = seen
        self._anchor_real, self._anchor_sim, self._speed = anchor_real, anchor_sim, speed

    def _save(self) -> None:
        if self._path is None:
            return
        state = {
            "v": STATE_VERSION,
            "anchor_real": self._anchor_real,
            "anchor_sim": self._anchor_sim,
            "speed": self._speed,
        }
        temporary = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self._path)
        info = self._path.stat()
        self._seen = (info.st_ino, info.st_mtime_ns, info.st_size)


def _speed_check(speed: float) -> None:
    if not isinstance(speed, int | float) or isinstance(speed, bool) or not 0 <= speed < 1e7:
        raise ValueError(f"speed must be a number of simulated seconds per real second ≥ 0, got {speed!r}")


class StepClock:
    """What a fleet's meters see: the instant the fleet is stepping through
    (``now()``, set by the fleet), and the source clock's ``monotonic()``."""

    def __init__(self, source) -> None:
        self.source = source
        self.current: int | None = None

    def now(self) -> int | None:
        return self.current

    def status(self) -> str:
        return self.source.status()

    def monotonic(self) -> float:
        return self.source.monotonic()
