"""Closed-interval readings and the bounded queue of those not yet acknowledged.

A reading is a plain tuple of integers (cheap on a board with 100 kB of heap)::

    (seq, period_start_s, period_s, import_wh, export_wh,
     import_total_wh, export_total_wh, v_min_dv, v_max_dv, clock)

``period_start_s`` is Unix seconds, voltages are integer decivolts (or None),
``clock`` the clock status when the interval closed ("ntp"/"unsynced"). The
wire payload is rebuilt from it on every send (``reading_body``): signing is
deterministic, so a re-sent reading is byte-identical, and a meter re-keyed by
its operator re-signs its backlog with the new secret.
"""

from firmware.signing import Tenths
from firmware.timefmt import utc_text

SEQ = 0
PERIOD_START = 1
PERIOD_S = 2
IMPORT_WH = 3
EXPORT_WH = 4
IMPORT_TOTAL_WH = 5
EXPORT_TOTAL_WH = 6
V_MIN_DV = 7
V_MAX_DV = 8
CLOCK = 9
FIELDS = 10


def reading_check(reading):
    """Raise ``ValueError`` unless ``reading`` is a well-formed reading tuple."""
    if not isinstance(reading, (tuple, list)) or len(reading) != FIELDS:
        raise ValueError("a reading has 10 fields")
    for index in range(V_MIN_DV):
        value = reading[index]
        if type(value) is not int or value < 0:
            raise ValueError("reading field " + str(index) + " is not a non-negative int")
    for index in (V_MIN_DV, V_MAX_DV):
        value = reading[index]
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError("voltage is not None or non-negative decivolts")
    if reading[CLOCK] is not None and not isinstance(reading[CLOCK], str):
        raise ValueError("clock status is a string")
    if reading[IMPORT_WH] > reading[IMPORT_TOTAL_WH] or reading[EXPORT_WH] > reading[EXPORT_TOTAL_WH]:
        raise ValueError("an interval holds more energy than its register")


def reading_body(meter_id, reading, with_clock=True):
    """The unsigned MQTT body of ``reading`` for meter ``meter_id`` (SPEC.md's
    reading, plus ``clock`` unless ``with_clock`` is false)."""
    body = {
        "v": 1,
        "meter": meter_id,
        "seq": reading[SEQ],
        "period_start": utc_text(reading[PERIOD_START]),
        "period_s": reading[PERIOD_S],
        "import_wh": reading[IMPORT_WH],
        "export_wh": reading[EXPORT_WH],
        "import_total_wh": reading[IMPORT_TOTAL_WH],
        "export_total_wh": reading[EXPORT_TOTAL_WH],
    }
    if reading[V_MIN_DV] is not None:
        body["v_min"] = Tenths(reading[V_MIN_DV])
    if reading[V_MAX_DV] is not None:
        body["v_max"] = Tenths(reading[V_MAX_DV])
    if with_clock and reading[CLOCK] is not None:
        body["clock"] = reading[CLOCK]
    return body


class Backlog:
    """Unacknowledged readings in ascending seq order, at most ``capacity``.

    When full, the oldest readings are kept and a new one is refused (``push``
    returns False; the caller counts it as dropped): the oldest are the ones the
    backend is waiting for, and a refused interval's energy is not lost from
    the cumulative registers, which the next accepted reading carries.
    """

    def __init__(self, capacity):
        if type(capacity) is not int or capacity < 1:
            raise ValueError("capacity is a positive int")
        self.capacity = capacity
        self._items = []

    def __len__(self):
        return len(self._items)

    def push(self, reading):
        """Append ``reading``; False (nothing stored) when full. Seqs must ascend."""
        if self._items and reading[SEQ] <= self._items[-1][SEQ]:
            raise ValueError("readings are queued in ascending seq order")
        if len(self._items) >= self.capacity:
            return False
        self._items.append(tuple(reading))
        return True

    def remove(self, seq):
        """Remove and return the reading with ``seq``; None if not queued."""
        for index, reading in enumerate(self._items):
            if reading[SEQ] == seq:
                return self._items.pop(index)
        return None

    def get(self, seq):
        for reading in self._items:
            if reading[SEQ] == seq:
                return reading
        return None

    def items(self):
        """A copy of the queued readings, oldest first."""
        return list(self._items)

    def seqs(self):
        return [reading[SEQ] for reading in self._items]
