"""Commonwatt meter firmware: runs on MicroPython (an ESP32-class board) and on CPython.

The platform never imports this package; the MQTT contract (SPEC.md, "MQTT
contract") and the golden payloads in ``firmware/golden/`` are the interface.
Device-side modules use only what MicroPython ships; ``transport_paho`` is the
one CPython-only module. See ``firmware/README.md``.
"""
