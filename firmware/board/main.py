# Copied to the board's root as main.py: MicroPython runs it after boot.
from firmware.esp32 import run

run("config.json", "/data")
