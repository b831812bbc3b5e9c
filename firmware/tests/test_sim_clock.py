"""``SimClock``: accelerated, advanced by hand, never back, thread-safe, and
shared between processes through a file."""

import json
import threading
import time

import pytest

from firmware.sim.clock import SimClock, StepClock

from .conftest import T0


class FakeReal:
    """A real clock the test moves."""

    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_it_runs_speed_times_faster_than_real_time():
    real = FakeReal()
    clock = SimClock(T0, speed=180, real=real)
    assert clock.now() == T0
    real.now += 20
    assert clock.now() == T0 + 3600  # an hourly interval every 20 real seconds
    real.now += 0.5
    assert clock.now_exact() == pytest.approx(T0 + 3690)
    assert type(clock.now()) is int


def test_advance_jumps_ahead_and_time_runs_on_from_there():
    real = FakeReal()
    clock = SimClock(T0, speed=2, real=real)
    assert clock.advance(3600) == T0 + 3600
    real.now += 10
    assert clock.now() == T0 + 3620
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_speed_zero_stops_it_and_only_advance_moves_it():
    real = FakeReal()
    clock = SimClock(T0, speed=0, real=real)
    real.now += 1000
    assert clock.now() == T0
    clock.advance(900)
    real.now += 1000
    assert clock.now() == T0 + 900
    clock.set_speed(60)
    real.now += 1
    assert clock.now() == T0 + 960
    assert clock.speed == 60
    with pytest.raises(ValueError):
        clock.set_speed(-1)


def test_speed_one_from_now_is_the_wall_clock():
    clock = SimClock()
    assert abs(clock.now_exact() - time.time()) < 1


def test_it_never_goes_back_when_the_real_clock_steps_back():
    real = FakeReal()
    clock = SimClock(T0, speed=10, real=real)
    real.now += 5
    assert clock.now() == T0 + 50
    real.now -= 3  # NTP stepped the host's clock back
    assert clock.now() == T0 + 50
    real.now += 4
    assert clock.now() == T0 + 60


def test_monotonic_is_real_time_whatever_the_speed():
    clock = SimClock(T0, speed=10_000)
    before_sim, before_mono = clock.now_exact(), clock.monotonic()
    time.sleep(0.05)
    assert clock.monotonic() - before_mono < 5  # not 500 simulated seconds
    assert clock.now_exact() - before_sim >= 400
    assert clock.status() == "ntp"


def test_concurrent_advances_all_count_and_readers_never_see_time_go_back():
    clock = SimClock(T0, speed=0)
    seen_back = []
    stop = threading.Event()

    def read():
        last = 0
        while not stop.is_set():
            value = clock.now_exact()
            if value < last:
                seen_back.append((last, value))
            last = value

    def advance():
        for _ in range(500):
            clock.advance(1)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=advance) for _ in range(8)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert clock.now() == T0 + 4000
    assert seen_back == []


def test_processes_share_one_clock_through_a_file(tmp_path):
    path = tmp_path / "clock.json"
    real = FakeReal()
    first = SimClock(T0, speed=180, state_path=path, real=real)
    # A second process joins: its own start and speed are ignored.
    second = SimClock(T0 + 99_999, speed=1, state_path=path, real=real)
    assert second.now() == first.now() == T0
    assert second.speed == 180
    first.advance(3600)
    real.now += 1  # past the reload throttle
    assert second.now() == first.now() == T0 + 3600 + 180
    second.set_speed(0)
    real.now += 10
    assert first.now() == second.now() == T0 + 3600 + 180
    state = json.loads(path.read_text())
    assert state["speed"] == 0 and state["v"] == 1


def test_advances_from_several_processes_all_count(tmp_path):
    path = tmp_path / "clock.json"
    clocks = [SimClock(T0, speed=0, state_path=path) for _ in range(4)]

    def advance(clock):
        for _ in range(50):
            clock.advance(60)

    threads = [threading.Thread(target=advance, args=(clock,)) for clock in clocks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert SimClock(state_path=path).now() == T0 + 4 * 50 * 60


def test_a_torn_state_file_is_ignored_not_fatal(tmp_path):
    path = tmp_path / "clock.json"
    real = FakeReal()
    clock = SimClock(T0, speed=1, state_path=path, real=real)
    path.write_text('{"anchor_real": 1')
    real.now += 5
    assert clock.now() == T0 + 5


def test_the_step_clock_shows_the_fleets_instant_and_real_monotonic():
    source = SimClock(T0, speed=100)
    step = StepClock(source)
    assert step.now() is None
    step.current = T0 + 60
    assert step.now() == T0 + 60
    assert step.status() == "ntp"
    assert abs(step.monotonic() - source.monotonic()) < 1


def test_a_bad_speed_is_refused():
    for speed in (-1, "fast", True, float("inf")):
        with pytest.raises(ValueError):
            SimClock(T0, speed=speed)
