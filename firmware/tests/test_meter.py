"""The meter: exact intervals, a backlog that survives power cuts and leaves
only on accepted/duplicate, bounded with a drop counter, status and will."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.drivers import ManualClock
from firmware.journal import FileJournal, MemoryJournal, frame
from firmware.signing import Signer
from firmware.transport_memory import MemoryBroker

from .conftest import BASE, SECRET, T0, Backend, Rig

INTERVAL_S = 900


def readings(rig):
    return [json.loads(payload) for payload in rig.published("readings")]


def offline_rig(**config):
    broker = MemoryBroker()
    broker.stop()
    return Rig(broker=broker, **config)


# -- intervals and registers -------------------------------------------------

steps = st.lists(st.tuples(st.integers(0, 2 * INTERVAL_S), st.integers(0, 10**6), st.integers(0, 10**6)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, INTERVAL_S - 1), steps)
def test_every_wh_lands_in_exactly_one_interval(offset_s, steps):
    """Any energy increments over any tick pattern: each closed interval holds
    exactly the energy read while it was open, the registers are the running
    sum, and nothing is lost or counted twice (modelled independently)."""
    rig = offline_rig(queue_max=1000, checkpoint_s=10**6)
    rig.clock.advance(offset_s)
    rig.meter.tick()
    now, opened, open_import, open_export = T0 + offset_s, T0, 0, 0
    expected = []
    for advance_s, import_wh, export_wh in steps:
        rig.source.add(import_wh, export_wh)
        rig.clock.advance(advance_s)
        rig.meter.tick()
        now += advance_s
        open_import += import_wh
        open_export += export_wh
        if now >= opened + INTERVAL_S:
            expected.append((opened, open_import, open_export))
            opened, open_import, open_export = now - now % INTERVAL_S, 0, 0
    got = rig.meter.backlog.items()
    assert [(r[1], r[3], r[4]) for r in got] == expected
    assert [r[0] for r in got] == list(range(1, len(got) + 1))
    import_total = export_total = 0
    for reading in got:
        assert reading[1] % INTERVAL_S == 0 and reading[2] == INTERVAL_S
        import_total += reading[3]
        export_total += reading[4]
        assert (reading[5], reading[6]) == (import_total, export_total)
    state = rig.meter.state
    assert state["it"] == sum(s[1] for s in steps) == import_total + state["imp"]
    assert state["et"] == sum(s[2] for s in steps) == export_total + state["exp"]


def test_a_reading_is_the_contract_payload_signed(rig):
    backend = Backend(rig.broker)
    rig.source.add(1200, 30, 2312)
    rig.run(INTERVAL_S, step=60, backend=backend)
    rig.source.add(5, 0, 2298)
    rig.run(INTERVAL_S, step=60, backend=backend)
    first, second = readings(rig)
    assert backend.acks == [(1, "accepted"), (2, "accepted")]
    assert rig.meter.queued_seqs() == []
    assert first == {
        "v": 1,
        "meter": "m-1",
        "seq": 1,
        "period_start": "2026-01-01T00:00:00Z",
        "period_s": 900,
        "import_wh": 1200,
        "export_wh": 30,
        "import_total_wh": 1200,
        "export_total_wh": 30,
        "v_min": 231.2,
        "v_max": 231.2,
        "clock": "ntp",
        "sig": first["sig"],
    }
    assert second["period_start"] == "2026-01-01T00:15:00Z"
    assert (second["v_min"], second["v_max"]) == (229.8, 231.2)
    assert (second["import_total_wh"], second["import_wh"]) == (1205, 5)
    raw = rig.published("readings")[0]
    assert raw == json.dumps(first, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_clock_status_is_noted_and_an_unknown_clock_closes_nothing():
    rig = Rig(clock=ManualClock(None, status="unsynced"))
    backend = Backend(rig.broker)
    rig.source.add(70, 0)
    rig.run(3 * INTERVAL_S, step=300, backend=backend)
    assert readings(rig) == [] and rig.meter.state["it"] == 70
    rig.clock.set(T0 + 100)  # the clock becomes known, still not synchronised
    rig.meter.tick()
    rig.run(INTERVAL_S, step=100, backend=backend)
    (reading,) = readings(rig)
    assert (reading["clock"], reading["import_wh"], reading["period_start"]) == ("unsynced", 70, "2026-01-01T00:00:00Z")


def test_clock_field_can_be_left_out_for_a_strict_backend():
    rig = Rig(report_clock=False)
    rig.run(INTERVAL_S, step=300)
    assert "clock" not in readings(rig)[0]


def test_a_long_outage_skips_intervals_without_losing_energy(rig):
    backend = Backend(rig.broker)
    rig.source.add(10, 0)
    rig.run(5 * INTERVAL_S + 7, step=5 * INTERVAL_S + 7, backend=backend)
    rig.source.add(4, 0)
    rig.run(INTERVAL_S, step=INTERVAL_S, backend=backend)
    first, second = readings(rig)
    assert (first["period_start"], first["import_wh"]) == ("2026-01-01T00:00:00Z", 10)
    assert (second["period_start"], second["import_wh"], second["import_total_wh"]) == ("2026-01-01T01:15:00Z", 4, 14)


# -- the backlog: durable, deleted only on accepted/duplicate ---------------


def test_a_reading_survives_a_power_cut_before_its_ack_and_is_sent_after_reboot(tmp_path):
    rig = Rig(journal=FileJournal(str(tmp_path / "flash")))
    rig.source.add(321, 0)
    rig.run(INTERVAL_S, step=60)
    before = rig.published("readings")
    assert len(before) == 1 and rig.meter.queued_seqs() == [1]
    rig.broker.published.clear()

    rig.journal = FileJournal(str(tmp_path / "flash"))  # a new boot reads the flash anew
    rig.reboot()
    rig.run(2, step=1)
    assert rig.published("readings") == before  # byte-identical: the backend sees a duplicate
    assert rig.meter.queued_seqs() == [1]
    rig.ack(1, "duplicate")
    assert rig.meter.queued_seqs() == []
    rig.journal = FileJournal(str(tmp_path / "flash"))
    rig.reboot()
    assert rig.meter.queued_seqs() == [] and rig.meter.state["seq"] == 2


def test_readings_closed_offline_are_sent_in_seq_order_on_reconnect(tmp_path):
    rig = offline_rig()
    for wh in (1, 2, 3):
        rig.source.add(wh, 0)
        rig.run(INTERVAL_S, step=300)
    rig.reboot()
    rig.broker.start()
    backend = Backend(rig.broker)
    rig.run(400, step=1, backend=backend)
    assert [r["seq"] for r in readings(rig)] == [1, 2, 3]
    assert [r["import_wh"] for r in readings(rig)] == [1, 2, 3]
    assert backend.acks == [(1, "accepted"), (2, "accepted"), (3, "accepted")]
    assert rig.meter.queued_seqs() == []


not_an_ack = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda seq, status, reason: json.dumps({"seq": seq, "status": status, "reason": reason}).encode(),
        st.one_of(st.just(1), st.none(), st.text(max_size=3), st.floats(), st.booleans()),
        st.sampled_from(["pending", "ACCEPTED", "", None, "rejected"]),
        st.sampled_from([None, "future_period", "bad_signature", "unknown_meter", "new_reason"]),
    ),
    st.builds(lambda seq: json.dumps({"seq": seq, "status": "accepted"}).encode(), st.integers(2, 10)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(not_an_ack, max_size=8))
def test_nothing_but_accepted_or_duplicate_deletes_a_reading(messages):
    rig = Rig()
    rig.run(INTERVAL_S, step=300)
    for payload in messages:
        rig.broker.publish(BASE + "ack", payload)
        rig.meter.tick()
    assert rig.meter.queued_seqs() == [1]
    rig.reboot()
    assert rig.meter.queued_seqs() == [1]
    rig.ack(1, "accepted")
    assert rig.meter.queued_seqs() == []


def test_unacknowledged_reading_is_resent_after_the_ack_timeout(rig):
    rig.run(INTERVAL_S, step=300)
    assert len(rig.published("readings")) == 1
    rig.run(59, step=1)
    assert len(rig.published("readings")) == 1
    rig.run(2, step=1)
    first, again = rig.published("readings")
    assert first == again


def test_a_permanent_rejection_goes_to_the_dead_letter_count(rig):
    rig.run(2 * INTERVAL_S, step=300)
    rig.ack(1, "rejected", "conflict")
    assert rig.meter.queued_seqs() == [2]
    assert rig.meter.state["dead"] == 1
    rig.reboot()
    assert rig.meter.state["dead"] == 1 and rig.meter.queued_seqs() == [2]
    state = json.loads(rig.broker.retained[BASE + "state"])
    assert state["dead_letter"] == 1 and Signer(SECRET).valid(state)


def test_a_key_or_registration_problem_holds_the_backlog_and_retries():
    rig = Rig(hold_retry_s=300)
    rig.run(2 * INTERVAL_S, step=300)
    rig.ack(1, "rejected", "bad_signature")
    rig.ack(2, "rejected", "bad_signature")
    sent = len(rig.published("readings"))
    rig.run(299, step=1)
    assert len(rig.published("readings")) == sent  # the oldest waits out its hold, the rest wait behind it
    rig.run(2, step=1)
    assert [r["seq"] for r in readings(rig)[sent:]] == [1, 2]
    assert rig.meter.queued_seqs() == [1, 2] and rig.meter.state["dead"] == 0


def test_inflight_readings_are_bounded():
    rig = offline_rig(max_inflight=3, reconnect_max_s=2)
    rig.run(5 * INTERVAL_S, step=INTERVAL_S)
    rig.broker.start()
    rig.run(4, step=1)
    assert [r["seq"] for r in readings(rig)] == [1, 2, 3]
    rig.ack(1)
    rig.ack(2)
    assert [r["seq"] for r in readings(rig)] == [1, 2, 3, 4, 5]


# -- bounds --------------------------------------------------------------------


def test_a_full_queue_keeps_the_oldest_and_counts_every_drop():
    rig = offline_rig(queue_max=3)
    for _ in range(5):
        rig.source.add(10, 1)
        rig.run(INTERVAL_S, step=INTERVAL_S)
    assert rig.meter.queued_seqs() == [1, 2, 3]
    assert rig.meter.state["drop"] == 2
    rig.reboot()
    assert rig.meter.queued_seqs() == [1, 2, 3] and rig.meter.state["drop"] == 2
    rig.broker.start()
    rig.run(5, step=1)
    for seq in (1, 2, 3):
        rig.ack(seq)
    rig.source.add(10, 1)
    rig.run(INTERVAL_S, step=INTERVAL_S)
    last = readings(rig)[-1]
    # Readings 4 and 5 were dropped; their energy is still in the registers.
    assert (last["seq"], last["import_wh"], last["import_total_wh"]) == (6, 10, 60)
    assert json.loads(rig.broker.retained[BASE + "state"])["dropped"] == 2


def test_journal_compaction_keeps_it_small_and_loses_nothing():
    rig = Rig(journal_max_bytes=2000, checkpoint_s=1)
    largest_record = 0
    for index in range(40):
        rig.source.add(index, 0)
        rig.run(INTERVAL_S, step=100)
        if index % 3:
            rig.ack(index + 1)
        largest_record = max(largest_record, *map(len, rig.journal.data.split(b"\n")))
        snapshot = len(frame({"t": "s", "st": rig.meter.state})) + sum(
            len(frame({"t": "q", "r": list(reading)})) for reading in rig.meter.backlog.items()
        )
        assert rig.journal.size() <= snapshot + 100 + 2000 + largest_record
    assert rig.meter.counters["compactions"] > 5
    queued = rig.meter.queued_seqs()
    state = dict(rig.meter.state)
    rig.reboot()
    assert rig.meter.queued_seqs() == queued
    assert rig.meter.state["it"] == state["it"] == sum(range(40))


def test_a_power_cut_inside_any_journal_write_boots_to_a_consistent_meter():
    rig = Rig(checkpoint_s=1)
    for index in range(4):
        rig.source.add(100 + index, 0)
        rig.run(INTERVAL_S, step=300)
    rig.ack(2)
    data = rig.journal.data
    for cut in range(0, len(data), 7):
        journal = MemoryJournal()
        journal.data = data[:cut]
        again = Rig(journal=journal)
        queued = again.meter.backlog.items()
        assert all(reading[0] < again.meter.state["seq"] for reading in queued)
        assert again.meter.state["it"] >= sum(reading[3] for reading in queued)


def test_a_failing_flash_write_changes_nothing_until_it_works():
    class FlakyJournal(MemoryJournal):
        broken = False

        def append(self, record):
            if self.broken:
                raise OSError(28, "no space left")
            super().append(record)

    rig = Rig(journal=FlakyJournal())
    rig.source.add(50, 0)
    rig.journal.broken = True
    rig.clock.advance(INTERVAL_S)
    with pytest.raises(OSError):
        rig.meter.tick()
    assert rig.meter.state["seq"] == 1 and rig.meter.queued_seqs() == [] and readings(rig) == []
    rig.journal.broken = False
    rig.meter.tick()
    (reading,) = readings(rig)
    assert (reading["seq"], reading["import_wh"]) == (1, 50)


# -- MQTT session --------------------------------------------------------------


def test_online_on_connect_and_offline_as_the_retained_will(rig):
    assert rig.broker.retained[BASE + "status"] == b"online"
    rig.transport.crash()
    assert rig.broker.retained[BASE + "status"] == b"offline"
    rig.run(5, step=1)
    assert rig.broker.retained[BASE + "status"] == b"online"
    rig.meter.shutdown()
    assert rig.broker.retained[BASE + "status"] == b"offline"


def test_a_broker_outage_backs_off_and_reconnects(rig):
    rig.broker.stop()
    rig.run(INTERVAL_S, step=10)
    assert not rig.meter.online and rig.meter.counters["connect_failures"] >= 3
    rig.broker.start()
    rig.run(600, step=10)
    assert rig.meter.online
    assert {r["seq"] for r in readings(rig)} == {1}
    assert rig.meter.queued_seqs() == [1]


@pytest.mark.parametrize(
    "bad",
    [
        {"secret": ""},
        {"meter": "m/1"},
        {"grid": "g+"},
        {"interval_s": 7},
        {"queue_max": 0},
        {"ack_timeout_s": "60"},
        {"initial_state": "off"},
        {"report_clock": "yes"},
    ],
)
def test_a_bad_config_is_refused_with_its_key(bad):
    with pytest.raises(ValueError, match=f"config: {next(iter(bad))}"):
        Rig(**bad)


def test_a_journal_of_another_meter_is_not_adopted():
    rig = offline_rig()
    rig.run(2 * INTERVAL_S, step=INTERVAL_S)
    assert rig.meter.queued_seqs() == [1, 2]
    other = Rig(journal=rig.journal, broker=rig.broker, meter="m-2")
    assert other.meter.queued_seqs() == [] and other.meter.state["seq"] == 1
    assert any("another meter" in line for line in other.logs)
