"""Drivers: pulses, meter registers and simulated profiles turn into exact integer Wh."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware import modbus
from firmware.drivers import ManualClock, ProfileSource, PulseSource, TotalsSource


@given(st.sampled_from([100, 800, 1000, 1600, 3200]), st.lists(st.integers(0, 5000), max_size=40))
def test_pulses_become_exact_wh_with_the_remainder_carried(pulses_per_kwh, bursts):
    source = PulseSource(pulses_per_kwh)
    reported = 0
    for burst in bursts:
        for _ in range(burst % 50):
            source.count_import()
        source.import_pulses += burst - burst % 50  # a burst the ISR counted meanwhile
        reported += source.read()[0]
    assert reported == sum(bursts) * 1000 // pulses_per_kwh


def test_export_pulses_have_their_own_constant():
    source = PulseSource(1000, export_pulses_per_kwh=500)
    for _ in range(3):
        source.count_export()
    assert source.read() == (0, 6, None)


@given(st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 10**4)), min_size=1, max_size=30), st.data())
def test_totals_source_reports_rises_and_survives_a_reboot(steps, data):
    totals = [500, 70]

    def fetch():
        return totals[0], totals[1], 2301

    source = TotalsSource(fetch)
    assert source.read() == (0, 0, 2301)  # the first fetch is the baseline
    reboot_at = data.draw(st.integers(0, len(steps) - 1))
    reported = [0, 0]
    for index, (import_wh, export_wh) in enumerate(steps):
        totals[0] += import_wh
        totals[1] += export_wh
        if index == reboot_at:
            # The snapshot was persisted before this step's energy was read:
            # after the reboot, that energy is still reported.
            snapshot = source.snapshot()
            source = TotalsSource(fetch)
            source.restore(snapshot)
        import_wh_read, export_wh_read, _ = source.read()
        reported[0] += import_wh_read
        reported[1] += export_wh_read
    assert reported == [sum(step[0] for step in steps), sum(step[1] for step in steps)]


def test_totals_that_fall_start_a_new_baseline():
    totals = [1000, 0]
    source = TotalsSource(lambda: (totals[0], totals[1], None))
    source.read()
    totals[0] = 5
    assert source.read() == (0, 0, None)
    assert source.resets == 1
    totals[0] = 9
    assert source.read() == (4, 0, None)


def test_profile_source_integrates_watt_seconds_exactly():
    clock = ManualClock(0)
    source = ProfileSource(clock, lambda t: 1000, lambda t: 250)
    assert source.read() == (0, 0, None)  # the first read starts the integration
    total = [0, 0]
    for _ in range(7200):
        clock.advance(1)
        import_wh, export_wh, _ = source.read()
        total[0] += import_wh
        total[1] += export_wh
    assert total == [2000, 500]


def test_modbus_frames_and_crc():
    assert modbus.request(1, 0, 2) == bytes.fromhex("01040000000271cb")
    values = struct.pack(">ff", 1234.5, 0.25)
    frame = bytes([1, 4, 8]) + values
    frame += struct.pack("<H", modbus.crc16(frame))
    data = modbus.response_registers(frame, 1, 4)
    assert modbus.kwh_to_wh(modbus.float32(data, 0)) == 1234500
    assert modbus.kwh_to_wh(modbus.float32(data, 4)) == 250
    with pytest.raises(ValueError):
        modbus.response_registers(frame[:-1] + bytes([frame[-1] ^ 1]), 1, 4)
    with pytest.raises(ValueError):
        modbus.response_registers(frame, 2, 4)
    error = bytes([1, 0x84, 2])
    with pytest.raises(ValueError, match="exception code 2"):
        modbus.response_registers(error + struct.pack("<H", modbus.crc16(error)), 1, 4)
