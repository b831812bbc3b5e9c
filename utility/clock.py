"""The one clock. Production reads the wall clock; the demo and the simulator
install an accelerated clock that the grid page's "advance" button moves.
Only edges (tasks, commands, views, the MQTT listener) read it; services and
domain functions take ``now`` as an argument."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

_source: Callable[[], datetime] = timezone.now


def now() -> datetime:
    return _source()


def clock_install(source: Callable[[], datetime]) -> None:
    global _source
    _source = source


def clock_reset() -> None:
    clock_install(timezone.now)
