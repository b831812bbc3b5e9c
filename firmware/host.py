"""CPython-only drivers for running the firmware on a PC (simulator, bench)."""

import time


class SystemClock:
    """The host's clock: ``now()`` is ``time.time()`` in whole seconds. A PC is
    assumed NTP-synchronised (``status="ntp"``) unless told otherwise."""

    def __init__(self, status="ntp"):
        self._status = status

    def now(self):
        return int(time.time())

    def status(self):
        return self._status

    def monotonic(self):
        return time.monotonic()
