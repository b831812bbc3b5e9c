"""The demo clock: one simulated clock for the platform (``utility.clock``)
and the fleet, accelerated, advanced by the grid page, shared by processes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from demo.clock import demo_clock, demo_clock_advance, demo_clock_start, demo_clock_stop, speed_for
from utility import clock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def wall_clock_afterwards():
    yield
    demo_clock_stop()


def test_the_demo_runs_an_interval_every_twenty_seconds_by_default():
    assert speed_for(3600) == 180
    assert speed_for(900, 10) == 90
    demo = demo_clock_start(start=T0, interval_s=3600)
    assert demo.speed == 180
    real_before, sim_before = time.monotonic(), clock.now()
    time.sleep(0.2)
    elapsed_real = time.monotonic() - real_before
    elapsed_sim = (clock.now() - sim_before).total_seconds()
    # 180 simulated seconds per real one, give or take the scheduler.
    assert 150 * 0.2 < elapsed_sim < 200 * (elapsed_real + 0.05)


def test_the_platform_and_the_fleet_read_the_same_clock():
    demo = demo_clock_start(start=T0 + timedelta(minutes=30), speed=0)
    assert demo_clock() is demo
    assert clock.now() == T0 + timedelta(minutes=30)
    assert clock.now().tzinfo is not None
    assert demo.sim.now() == int((T0 + timedelta(minutes=30)).timestamp())  # the firmware's view
    demo_clock_advance()
    assert clock.now() == T0 + timedelta(minutes=90)
    assert demo.sim.now() == int(clock.now().timestamp())
    assert demo_clock_advance(3) == T0 + timedelta(minutes=270)


def test_advancing_needs_a_whole_number_of_intervals():
    demo = demo_clock_start(start=T0, speed=0, interval_s=900)
    assert demo.advance(2) == T0 + timedelta(minutes=30)
    for bad in (0, -1, 1.5, "1"):
        with pytest.raises(ValueError):
            demo.advance(bad)


def test_stopping_the_clock_and_setting_its_speed():
    demo = demo_clock_start(start=T0, speed=0)
    assert demo.next_interval_in_s() is None
    demo.set_speed(3600)
    assert 0 < demo.next_interval_in_s() <= 1.0
    demo.set_speed(0)
    frozen = clock.now()
    time.sleep(0.02)
    assert clock.now() == frozen


def test_production_time_cannot_be_advanced():
    demo_clock_stop()
    assert demo_clock() is None
    with pytest.raises(RuntimeError, match="no demo clock"):
        demo_clock_advance()
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1


def test_a_naive_start_is_refused():
    with pytest.raises(ValueError, match="UTC-aware"):
        demo_clock_start(start=datetime(2026, 1, 1))


def test_button_presses_from_many_requests_at_once_all_count():
    demo_clock_start(start=T0, speed=0)
    threads = [threading.Thread(target=lambda: [demo_clock_advance() for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() == T0 + timedelta(hours=200)


def test_processes_joining_a_clock_file_share_its_time_and_its_advances(tmp_path):
    path = str(tmp_path / "demo-clock.json")
    first = demo_clock_start(start=T0, speed=0, state_path=path)
    # What the simulator process does: join, whatever it was told to start at.
    other = demo_clock_start(start=T0 + timedelta(days=9), speed=500, state_path=path)
    assert other.now() == first.now() == T0
    assert other.speed == 0
    first.advance(2)
    deadline = time.monotonic() + 5
    while other.now() != T0 + timedelta(hours=2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert other.now() == T0 + timedelta(hours=2)
