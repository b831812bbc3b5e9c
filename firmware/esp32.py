"""The board: an ESP32 running MicroPython, with a relay, an energy meter
(S0 pulses or Modbus RTU) and Wi-Fi. Imported only on the device.

``run()`` reads ``config.json`` (see ``board/config.example.json``), builds
the drivers and ticks the meter every 250 ms under a watchdog: if anything
hangs, the board resets, and the journal on flash makes that safe.
"""

import json
import time

import machine
import network

from firmware import modbus
from firmware.drivers import PulseSource, TotalsSource
from firmware.journal import FileJournal
from firmware.meter import Meter

EPOCH_2000_S = 946684800  # ports whose time.time() counts from 2000-01-01
EARLIEST_VALID_S = 1700000000  # an RTC never set reads a date before this


class PinRelay:
    """A relay on a GPIO; ``active_high`` when a high level closes it."""

    def __init__(self, pin, active_high=True):
        self.pin = machine.Pin(pin, machine.Pin.OUT)
        self.active_high = active_high

    def set(self, closed):
        self.pin.value(1 if bool(closed) == bool(self.active_high) else 0)


class NtpClock:
    """The RTC, set by NTP. ``now()`` is None until the RTC holds a plausible
    date; ``status()`` is "ntp" within ``max_age_s`` of the last sync."""

    def __init__(self, host="pool.ntp.org", resync_s=3600, max_age_s=86400):
        self.host = host
        self.resync_s = resync_s
        self.max_age_s = max_age_s
        self._offset = EPOCH_2000_S if time.gmtime(0)[0] == 2000 else 0
        self._last_sync = None
        self._last_try = None
        self._mono_ms = 0
        self._ticks = time.ticks_ms()

    def monotonic(self):
        ticks = time.ticks_ms()
        self._mono_ms += time.ticks_diff(ticks, self._ticks)
        self._ticks = ticks
        return self._mono_ms // 1000

    def now(self):
        moment = int(time.time()) + self._offset
        return moment if moment >= EARLIEST_VALID_S else None

    def status(self):
        if self._last_sync is not None and self.monotonic() - self._last_sync <= self.max_age_s:
            return "ntp"
        return "unsynced"

    def maybe_sync(self):
        """Sync when due (at most every minute while failing); never raises."""
        mono = self.monotonic()
        due = self._last_sync is None or mono - self._last_sync >= self.resync_s
        if not due or (self._last_try is not None and mono - self._last_try < 60):
            return
        self._last_try = mono
        try:
            import ntptime

            ntptime.host = self.host
            ntptime.settime()
            self._last_sync = self.monotonic()
        except (OSError, OverflowError, IndexError) as exc:
            print("ntp:", repr(exc))


class ModbusFetch:
    """Reads import/export kWh and voltage from a Modbus RTU meter over a UART
    (``de_pin`` drives an RS-485 transceiver's DE/RE, if any)."""

    def __init__(self, uart_id=2, tx=17, rx=16, address=1, baudrate=9600, de_pin=None):
        self.uart = machine.UART(uart_id, baudrate=baudrate, tx=tx, rx=rx, timeout=300)
        self.address = address
        self.de = machine.Pin(de_pin, machine.Pin.OUT, value=0) if de_pin is not None else None

    def _query(self, register, count):
        while self.uart.any():
            self.uart.read()
        if self.de is not None:
            self.de.value(1)
        self.uart.write(modbus.request(self.address, register, count))
        self.uart.flush()
        if self.de is not None:
            self.de.value(0)
        frame = self.uart.read(5 + 2 * count)
        if not frame:
            raise OSError("modbus: no answer")
        return modbus.response_registers(frame, self.address, count)

    def __call__(self):
        energy = self._query(modbus.IMPORT_KWH_REGISTER, 4)
        volts = modbus.float32(self._query(modbus.VOLTAGE_REGISTER, 2))
        return (
            modbus.kwh_to_wh(modbus.float32(energy, 0)),
            modbus.kwh_to_wh(modbus.float32(energy, 4)),
            int(volts * 10 + 0.5),
        )


class UmqttTransport:
    """umqtt.simple behind the firmware's transport interface."""

    def __init__(
        self, host, port=1883, user=None, password=None, tls=False, ca_file=None, keepalive_s=60, link_up=None
    ):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.tls = tls
        self.ca_file = ca_file
        self.keepalive_s = keepalive_s
        self.link_up = link_up
        self._client = None
        self._callback = None
        self._last_ping = 0

    def set_callback(self, callback):
        self._callback = callback

    def connect(self, client_id, will_topic=None, will_payload=None):
        from umqtt.simple import MQTTClient

        if self.link_up is not None and not self.link_up():
            raise OSError("wifi not connected")
        self.close()
        client = MQTTClient(
            client_id,
            self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            keepalive=self.keepalive_s,
            ssl=self._tls_context(),
        )
        client.set_callback(self._callback)
        if will_topic:
            client.set_last_will(will_topic, will_payload, retain=True, qos=1)
        client.connect(clean_session=True)
        self._client = client
        self._last_ping = time.ticks_ms()

    def _tls_context(self):
        # umqtt.simple >= 1.4 (MicroPython >= 1.23) takes an SSLContext.
        if not self.tls:
            return None
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        else:
            print("tls: no ca_file in config.broker, the broker's certificate is not verified")
            context.verify_mode = ssl.CERT_NONE
        return context

    def is_connected(self):
        return self._client is not None and (self.link_up is None or self.link_up())

    def subscribe(self, topic, qos=1):
        self._need().subscribe(topic, qos)

    def publish(self, topic, payload, retain=False, qos=1):
        self._need().publish(topic, payload, retain, qos)

    def poll(self):
        client = self._need()
        if time.ticks_diff(time.ticks_ms(), self._last_ping) > self.keepalive_s * 500:
            client.ping()
            self._last_ping = time.ticks_ms()
        client.check_msg()

    def close(self):
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
            except OSError:
                pass

    def _need(self):
        if self._client is None:
            raise OSError("not connected")
        return self._client


def _source(config):
    kind = config.get("kind", "pulse")
    if kind == "modbus":
        options = dict(config)
        options.pop("kind")
        return TotalsSource(ModbusFetch(**options))
    if kind == "pulse":
        source = PulseSource(config.get("pulses_per_kwh", 1000), config.get("export_pulses_per_kwh"))
        trigger = machine.Pin.IRQ_FALLING
        pin = machine.Pin(config.get("import_pin", 4), machine.Pin.IN, machine.Pin.PULL_UP)
        pin.irq(trigger=trigger, handler=source.count_import)
        if config.get("export_pin") is not None:
            export_pin = machine.Pin(config["export_pin"], machine.Pin.IN, machine.Pin.PULL_UP)
            export_pin.irq(trigger=trigger, handler=source.count_export)
        return source
    raise ValueError("config: source.kind is pulse or modbus")


def run(config_path="config.json", data_dir="/data"):
    """Start the meter described by ``config_path``; never returns."""
    with open(config_path) as handle:
        config = json.load(handle)
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wifi = config.get("wifi", {})
    if wifi.get("ssid"):
        wlan.connect(wifi["ssid"], wifi.get("password", ""))
    clock = NtpClock(config.get("ntp_host", "pool.ntp.org"))
    relay_config = config.get("relay", {})
    relay = PinRelay(relay_config.get("pin", 5), relay_config.get("active_high", True))
    broker = config.get("broker", {})
    transport = UmqttTransport(
        broker.get("host", "localhost"),
        broker.get("port", 1883),
        broker.get("username", config.get("meter")),
        broker.get("password", config.get("secret")),
        broker.get("tls", False),
        broker.get("ca_file"),
        link_up=wlan.isconnected,
    )
    meter = Meter(config, _source(config.get("source", {})), relay, clock, FileJournal(data_dir), transport, print)
    watchdog = machine.WDT(timeout=config.get("watchdog_ms", 60000))
    meter.boot()
    while True:
        if wlan.isconnected():
            clock.maybe_sync()
        try:
            meter.tick()
        except Exception as exc:
            print("tick failed:", repr(exc))
        watchdog.feed()
        time.sleep_ms(250)
