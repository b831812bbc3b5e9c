"""Modbus RTU framing for an energy-meter chip or DIN-rail meter (pure, testable).

Defaults fit the Eastron SDM120/SDM630 family: input registers (function 4),
IEEE-754 float32 big-endian pairs; 0x0000 voltage (V), 0x0048 import active
energy (kWh), 0x004A export active energy (kWh).
"""

import struct

READ_INPUT_REGISTERS = 4
VOLTAGE_REGISTER = 0x0000
IMPORT_KWH_REGISTER = 0x0048
EXPORT_KWH_REGISTER = 0x004A


def crc16(data):
    """Modbus CRC-16 (poly 0xA001, init 0xFFFF) of ``data``."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def request(address, register, count, function=READ_INPUT_REGISTERS):
    """The RTU frame asking ``address`` for ``count`` registers from ``register``."""
    body = struct.pack(">BBHH", address, function, register, count)
    return body + struct.pack("<H", crc16(body))


def response_registers(frame, address, count, function=READ_INPUT_REGISTERS):
    """The register bytes of a response frame; ``ValueError`` if it is not the
    answer to our request (wrong CRC, address, function, length, or an exception)."""
    if len(frame) < 5 or struct.unpack("<H", frame[-2:])[0] != crc16(frame[:-2]):
        raise ValueError("modbus: bad CRC or short frame")
    if frame[0] != address:
        raise ValueError("modbus: answer from another address")
    if frame[1] == function | 0x80:
        raise ValueError("modbus: exception code " + str(frame[2]))
    if frame[1] != function or frame[2] != 2 * count or len(frame) != 5 + 2 * count:
        raise ValueError("modbus: unexpected answer")
    return frame[3:-2]


def float32(data, offset=0):
    """The big-endian IEEE-754 float at ``offset``."""
    return struct.unpack(">f", data[offset : offset + 4])[0]


def kwh_to_wh(kwh):
    """A meter's kWh register as integer Wh (rounded to the nearest)."""
    if kwh != kwh or kwh < 0:
        raise ValueError("modbus: energy register is negative or NaN")
    return int(kwh * 1000 + 0.5)
