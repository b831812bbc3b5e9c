"""The hardware behind small interfaces, and the drivers that run anywhere.

A ``Meter`` needs five objects; any object with these methods will do.

Energy source
    ``read() -> (import_wh, export_wh, volts_dv)``: integer Wh imported and
    exported since the previous ``read()`` (never negative), and the present
    voltage in integer decivolts or None. A driver keeps its own sub-Wh
    remainder so that no fraction is ever lost or rounded twice.
    Optional ``snapshot() -> JSON value`` and ``restore(value)``: the meter
    writes the snapshot with its registers, so a source with its own
    non-volatile registers (a Modbus meter) can return after a reboot the
    energy counted while the firmware was not running.
Relay
    ``set(closed)``: True closes the supply (connect), False opens it.
Clock
    ``now() -> int | None``: Unix seconds (UTC), None while the time is unknown
    (no interval closes then; energy keeps accumulating).
    ``status() -> "ntp" | "unsynced"``: "ntp" when synchronised recently.
    ``monotonic() -> number``: seconds that never go back (timeouts, backoff).
Journal
    ``journal.FileJournal`` (flash) or ``journal.MemoryJournal``.
Transport (MQTT)
    ``set_callback(fn(topic, payload))``, ``connect(client_id, will_topic,
    will_payload)`` (the will is retained, QoS 1), ``is_connected()``,
    ``publish(topic, payload, retain, qos)``, ``subscribe(topic, qos)``,
    ``poll()`` (deliver what arrived to the callback), ``close()``. Failures
    raise ``OSError``. ``esp32.UmqttTransport`` (umqtt.simple),
    ``transport_paho.PahoTransport`` (CPython), ``transport_memory``.
"""


class ScriptedSource:
    """Energy handed in by a test: ``add(import_wh, export_wh, volts_dv)``; the
    next ``read()`` returns the sum since the last one."""

    def __init__(self):
        self._import_wh = 0
        self._export_wh = 0
        self._volts_dv = None

    def add(self, import_wh=0, export_wh=0, volts_dv=None):
        self._import_wh += import_wh
        self._export_wh += export_wh
        if volts_dv is not None:
            self._volts_dv = volts_dv

    def read(self):
        result = (self._import_wh, self._export_wh, self._volts_dv)
        self._import_wh = 0
        self._export_wh = 0
        return result


class ProfileSource:
    """A simulated household, producer or street light: ``import_w(t)`` and
    ``export_w(t)`` give the power in integer watts at Unix time ``t``.

    Energy is integrated exactly in watt-seconds between reads (the power at
    the end of each step times its length); whole Wh are reported, the rest
    carried. ``volts_dv(t)`` is optional.
    """

    def __init__(self, clock, import_w, export_w=None, volts_dv=None):
        self.clock = clock
        self.import_w = import_w
        self.export_w = export_w or (lambda t: 0)
        self.volts_dv = volts_dv
        self._last = None
        self._import_ws = 0
        self._export_ws = 0

    def read(self):
        now = self.clock.now()
        if now is None:
            now = int(self.clock.monotonic())
        if self._last is None or now <= self._last:
            self._last = now if self._last is None else self._last
            return 0, 0, self.volts_dv(now) if self.volts_dv else None
        step_s = now - self._last
        self._last = now
        self._import_ws += max(0, int(self.import_w(now))) * step_s
        self._export_ws += max(0, int(self.export_w(now))) * step_s
        import_wh, self._import_ws = divmod(self._import_ws, 3600)
        export_wh, self._export_ws = divmod(self._export_ws, 3600)
        return import_wh, export_wh, self.volts_dv(now) if self.volts_dv else None


class MemoryRelay:
    """A relay that remembers: ``closed`` (None before the first ``set``) and
    ``history`` (every ``set``)."""

    def __init__(self):
        self.closed = None
        self.history = []

    def set(self, closed):
        self.closed = bool(closed)
        self.history.append(self.closed)


class ManualClock:
    """A clock a test or simulator moves: ``advance(seconds)``, ``set(now)``,
    ``set_status("ntp"|"unsynced")``. ``now=None`` means not yet known."""

    def __init__(self, now=None, status="ntp"):
        self._now = now
        self._status = status
        self._monotonic = 0

    def now(self):
        return self._now

    def status(self):
        return self._status

    def monotonic(self):
        return self._monotonic

    def advance(self, seconds):
        self._monotonic += seconds
        if self._now is not None:
            self._now += seconds

    def set(self, now):
        self._now = now

    def set_status(self, status):
        self._status = status


class PulseSource:
    """An S0 / LED pulse output: ``pulses_per_kwh`` per direction (e.g. 1000).

    The interrupt handlers ``count_import``/``count_export`` only increment a
    counter that is never reset, and ``read()`` takes the difference, so an
    interrupt between two lines of ``read()`` cannot lose a pulse. Pulses are
    turned into Wh exactly (``pulses × 1000 // pulses_per_kwh``, the remainder
    carried). Counters live in RAM: pulses since the last checkpoint are lost
    on a power cut (``checkpoint_s`` bounds it).
    """

    def __init__(self, pulses_per_kwh, export_pulses_per_kwh=None):
        if type(pulses_per_kwh) is not int or pulses_per_kwh < 1:
            raise ValueError("pulses_per_kwh is a positive int")
        self.pulses_per_kwh = pulses_per_kwh
        self.export_pulses_per_kwh = export_pulses_per_kwh or pulses_per_kwh
        self.import_pulses = 0
        self.export_pulses = 0
        self._seen = [0, 0]
        self._rest = [0, 0]  # thousandths of a pulse-Wh not yet reported
        self.volts_dv = None

    def count_import(self, _pin=None):
        self.import_pulses += 1

    def count_export(self, _pin=None):
        self.export_pulses += 1

    def _take(self, index, total, per_kwh):
        fresh = total - self._seen[index]
        self._seen[index] = total
        whole, self._rest[index] = divmod(fresh * 1000 + self._rest[index], per_kwh)
        return whole

    def read(self):
        import_wh = self._take(0, self.import_pulses, self.pulses_per_kwh)
        export_wh = self._take(1, self.export_pulses, self.export_pulses_per_kwh)
        return import_wh, export_wh, self.volts_dv


class TotalsSource:
    """A meter with its own cumulative registers (Modbus, M-Bus, a smart-meter
    port): ``fetch() -> (import_total_wh, export_total_wh, volts_dv)``.

    ``read()`` reports the rise since the previous fetch. Its snapshot is the
    last totals seen, so after a reboot the energy counted meanwhile is
    reported, not lost. Totals that fall (the meter was replaced or reset)
    start a new baseline and report nothing for that step.
    """

    def __init__(self, fetch):
        self.fetch = fetch
        self._last = None
        self.resets = 0

    def read(self):
        import_total_wh, export_total_wh, volts_dv = self.fetch()
        last, self._last = self._last, (import_total_wh, export_total_wh)
        if last is None:
            return 0, 0, volts_dv
        import_wh = import_total_wh - last[0]
        export_wh = export_total_wh - last[1]
        if import_wh < 0 or export_wh < 0:
            self.resets += 1
            return 0, 0, volts_dv
        return import_wh, export_wh, volts_dv

    def snapshot(self):
        return None if self._last is None else [self._last[0], self._last[1]]

    def restore(self, snapshot):
        if isinstance(snapshot, list) and len(snapshot) == 2:
            self._last = (snapshot[0], snapshot[1])
