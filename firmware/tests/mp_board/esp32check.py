"""Exercises ``esp32.py`` under MicroPython with stand-in ``machine``,
``network`` and ``umqtt.simple`` modules (``tests/mp_board/``): the board glue
compiles and drives its hardware as the interfaces say. Run by
``micropython_check.mjs``; on a real board use ``selfcheck`` instead."""

import struct

import machine
from firmware import esp32, modbus
from firmware.drivers import ManualClock
from firmware.journal import FileJournal
from firmware.meter import Meter
from firmware.signing import Signer, wire
from umqtt.simple import MQTTClient


def _frame(payload):
    body = bytes([1, 4, len(payload)]) + payload
    return body + struct.pack("<H", modbus.crc16(body))


def main(work_dir):
    checks = []
    relay = esp32.PinRelay(5)
    relay.set(True)
    checks.append(("relay closes high", machine.Pin.pins[5].level == 1))
    inverted = esp32.PinRelay(6, active_high=False)
    inverted.set(True)
    checks.append(("inverted relay closes low", machine.Pin.pins[6].level == 0))

    clock = esp32.NtpClock()
    first = clock.monotonic()
    checks.append(("ntp clock", clock.status() == "unsynced" and clock.monotonic() >= first))

    fetch = esp32.ModbusFetch()
    machine.UART.last.replies = [_frame(struct.pack(">ff", 1234.5, 0.25)), _frame(struct.pack(">f", 230.4))]
    checks.append(("modbus fetch", fetch() == (1234500, 250, 2304)))
    checks.append(("modbus request", machine.UART.last.written[0] == modbus.request(1, 0x48, 4)))

    source = esp32._source({"kind": "pulse", "import_pin": 4, "export_pin": 18, "pulses_per_kwh": 500})
    for _ in range(3):
        machine.Pin.pins[4].handler(machine.Pin.pins[4])
    machine.Pin.pins[18].handler(machine.Pin.pins[18])
    checks.append(("pulse interrupts", source.read() == (6, 2, None)))

    transport = esp32.UmqttTransport("broker", 1883, "m-9", "pw", link_up=lambda: True)
    config = {"grid": "g", "meter": "m-9", "secret": "pw", "interval_s": 900}
    manual = ManualClock(1767225600)
    meter = Meter(config, source, relay, manual, FileJournal(work_dir), transport)
    meter.tick()
    client = MQTTClient.instances[-1]
    checks.append(("umqtt client", client.args[:5] == ("m-9", "broker", 1883, "m-9", "pw")))
    checks.append(("umqtt will", ("will", "grid/g/meters/m-9/status", b"offline", True, 1) in client.calls))
    checks.append(("umqtt online", ("publish", "grid/g/meters/m-9/status", b"online", True, 1) in client.calls))
    decision = Signer("pw").signed({"state": "disconnect", "reason": "low_balance", "seq": 1})
    client.inbox.append((b"grid/g/meters/m-9/decision", wire(decision)))
    meter.tick()
    checks.append(("decision drives the pin", machine.Pin.pins[5].level == 0))
    manual.advance(900)
    meter.tick()
    readings = [call for call in client.calls if call[0] == "publish" and call[1].endswith("/readings")]
    checks.append(("reading published with qos 1", len(readings) == 1 and readings[0][4] == 1))

    failed = [name for name, ok in checks if not ok]
    passed = len(checks) - len(failed)
    print("esp32 glue on micropython: " + str(passed) + " checks ok, " + str(len(failed)) + " failed")
    if failed:
        raise AssertionError("esp32 check failed: " + ", ".join(failed))
