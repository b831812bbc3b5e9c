"""``readings_record``, the one plain function behind ``ingest_mqtt``, against
the real PostgreSQL: every bad input is rejected with its reason, stored for
operators, counted, and never stored as a reading; good readings are stored
exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from meters import ingest
from meters.credentials import secret_seal
from meters.ingest import InboundMessage, readings_record
from meters.models import IngestCounter, Meter, Reading, RejectedReading
from meters.protocol import MAX_PAYLOAD_BYTES, Reason, Status, sign, topic_readings
from meters.services import IssuedMeter, grid_mark_settled, meter_rotate_secret
from meters.tests.factories import HOUR, T0, grid_make, meter_issue, reading_make
from meters.tests.readings import MeterStream, encoded, reading_body, signed
from utility.lib.timeutil import parse_utc

pytestmark = pytest.mark.django_db

START = T0 + 24 * HOUR  # the interval most tests report
NOW = T0 + 72 * HOUR  # when the backend received the messages


@dataclass
class World:
    alice: IssuedMeter
    bob: IssuedMeter

    def body(self, **fields) -> dict:
        """Alice's first reading: 120 Wh imported in [START, +1 h)."""
        return {**reading_body("alice", 1, START, import_wh=120), **fields}

    def message(self, payload: dict | bytes, topic: str = "grid/north/meters/alice/readings") -> InboundMessage:
        raw = payload if isinstance(payload, bytes) else encoded(payload)
        return InboundMessage(topic, raw, NOW)

    def signed(self, **fields) -> InboundMessage:
        return self.message(signed(self.alice.secret, self.body(**fields)))


@pytest.fixture
def world() -> World:
    grid = grid_make("north", now=T0)
    grid_make("south", now=T0)
    return World(meter_issue(grid, "alice"), meter_issue(grid, "bob"))


def counters() -> dict[tuple[str, str], int]:
    return {(c.status, c.reason): c.count for c in IngestCounter.objects.all()}


def alice_signed_raw(w: World, text: str) -> InboundMessage:
    """A raw JSON text whose signature is made over its own canonical form."""
    return w.message(text.replace("SIG", sign(w.alice.secret, json.loads(text))).encode())


def _huge(w: World) -> InboundMessage:
    # A valid, signed reading padded past the limit: the size check comes first.
    return w.message(signed(w.alice.secret, w.body(pad="x" * MAX_PAYLOAD_BYTES)))


def _with(w: World, **changes) -> InboundMessage:
    """A signed reading with fields changed before signing."""
    return w.message(signed(w.alice.secret, {**w.body(), **changes}))


def _without(w: World, name: str) -> InboundMessage:
    body = w.body()
    del body[name]
    return w.message(signed(w.alice.secret, body))


def _tampered(w: World) -> InboundMessage:
    payload = signed(w.alice.secret, w.body())
    payload["import_wh"] = 1
    payload["import_total_wh"] = 1
    return w.message(payload)


BAD_INPUTS: list[tuple[str, Callable[[World], InboundMessage], Reason]] = [
    ("broken JSON", lambda w: w.message(b'{"v": 1, "meter": '), Reason.BAD_JSON),
    ("not UTF-8", lambda w: w.message(b'{"meter": "\xff"}'), Reason.BAD_JSON),
    ("NaN is not JSON", lambda w: w.message(b'{"v": NaN}'), Reason.BAD_JSON),
    ("a key twice", lambda w: w.message(b'{"v": 1, "v": 1}'), Reason.BAD_JSON),
    ("nested too deep", lambda w: w.message(b"[" * 10_000), Reason.BAD_JSON),
    ("empty payload", lambda w: w.message(b""), Reason.BAD_JSON),
    ("a JSON array", lambda w: w.message(b"[1, 2]"), Reason.NOT_OBJECT),
    ("a JSON string", lambda w: w.message(b'"reading"'), Reason.NOT_OBJECT),
    ("JSON null", lambda w: w.message(b"null"), Reason.NOT_OBJECT),
    ("huge payload (> 16 KiB)", _huge, Reason.TOO_LARGE),
    ("status topic", lambda w: w.message(w.signed().payload, "grid/north/meters/alice/status"), Reason.BAD_TOPIC),
    (
        "extra topic level",
        lambda w: w.message(w.signed().payload, "grid/north/meters/alice/readings/x"),
        Reason.BAD_TOPIC,
    ),
    ("empty grid level", lambda w: w.message(w.signed().payload, "grid//meters/alice/readings"), Reason.BAD_TOPIC),
    (
        "payload names another meter",
        lambda w: w.message(signed(w.alice.secret, w.body(meter="bob"))),
        Reason.TOPIC_MISMATCH,
    ),
    (
        "topic of another grid",
        lambda w: w.message(w.signed().payload, "grid/south/meters/alice/readings"),
        Reason.TOPIC_MISMATCH,
    ),
    (
        "unknown meter",
        lambda w: w.message(signed(w.alice.secret, w.body(meter="ghost")), topic_readings("north", "ghost")),
        Reason.UNKNOWN_METER,
    ),
    (
        "unicode meter id",
        lambda w: w.message(signed(w.alice.secret, w.body(meter="ålice")), topic_readings("north", "ålice")),
        Reason.UNKNOWN_METER,
    ),
    ("another meter's valid signature", lambda w: w.message(signed(w.bob.secret, w.body())), Reason.BAD_SIGNATURE),
    ("value changed after signing", _tampered, Reason.BAD_SIGNATURE),
    ("no signature", lambda w: w.message(w.body()), Reason.BAD_SIGNATURE),
    (
        "uppercase hex signature",
        lambda w: w.message({**w.body(), "sig": sign(w.alice.secret, w.body()).upper()}),
        Reason.BAD_SIGNATURE,
    ),
    ("signature not a string", lambda w: w.message({**w.body(), "sig": 7}), Reason.BAD_SIGNATURE),
    ("version 2", lambda w: _with(w, v=2), Reason.BAD_VERSION),
    ("version true", lambda w: _with(w, v=True), Reason.BAD_VERSION),
    ("version as text", lambda w: _with(w, v="1"), Reason.BAD_VERSION),
    ("float energy", lambda w: _with(w, import_wh=120.0), Reason.BAD_FIELD),
    ("bool energy", lambda w: _with(w, export_wh=False), Reason.BAD_FIELD),
    ("seq as text", lambda w: _with(w, seq="1"), Reason.BAD_FIELD),
    ("missing export_wh", lambda w: _without(w, "export_wh"), Reason.BAD_FIELD),
    ("missing period_start", lambda w: _without(w, "period_start"), Reason.BAD_FIELD),
    ("unknown field", lambda w: _with(w, firmware="1.2"), Reason.BAD_FIELD),
    ("period without offset", lambda w: _with(w, period_start="2026-01-02T00:00:00"), Reason.BAD_FIELD),
    ("period with unicode digits", lambda w: _with(w, period_start="２０２６-01-02T00:00:00Z"), Reason.BAD_FIELD),
    ("impossible date", lambda w: _with(w, period_start="2026-02-30T00:00:00Z"), Reason.BAD_FIELD),
    ("voltage as text", lambda w: _with(w, v_min="230"), Reason.BAD_FIELD),
    ("v_min above v_max", lambda w: _with(w, v_min=240, v_max=230), Reason.BAD_FIELD),
    ("counter above 2^53", lambda w: _with(w, import_total_wh=2**60), Reason.BAD_FIELD),
    ("unaligned period", lambda w: _with(w, period_start="2026-01-02T00:30:00Z"), Reason.UNALIGNED_PERIOD),
    ("period of 15 min on an hourly grid", lambda w: _with(w, period_s=900), Reason.UNALIGNED_PERIOD),
    ("fraction of a second", lambda w: _with(w, period_start="2026-01-02T00:00:00.5Z"), Reason.UNALIGNED_PERIOD),
    ("interval not ended", lambda w: _with(w, period_start="2026-01-04T00:00:00Z"), Reason.FUTURE_PERIOD),
    ("negative export", lambda w: _with(w, export_wh=-1), Reason.NEGATIVE_VALUE),
    ("negative seq", lambda w: _with(w, seq=-1), Reason.NEGATIVE_VALUE),
    ("negative voltage", lambda w: _with(w, v_min=-3.5), Reason.NEGATIVE_VALUE),
    ("total below the interval", lambda w: _with(w, import_total_wh=119), Reason.TOTALS_INCONSISTENT),
    (
        "lone surrogate in a string",
        lambda w: w.message(b'{"v": 1, "meter": "alice", "note": "\\ud800", "sig": "00"}'),
        Reason.BAD_JSON,
    ),
]


@pytest.mark.parametrize(("case", "build", "reason"), BAD_INPUTS, ids=[case for case, _, _ in BAD_INPUTS])
def test_bad_input_is_rejected_stored_counted_and_never_a_reading(world, case, build, reason):
    message = build(world)

    [outcome] = readings_record([message])

    assert (outcome.status, outcome.reason) == (Status.REJECTED, reason), outcome.detail
    assert outcome.detail
    assert Reading.objects.count() == 0
    [kept] = RejectedReading.objects.all()
    assert (kept.reason, kept.topic, kept.received_at) == (str(reason), message.topic, NOW)
    assert kept.payload == message.payload[:4096].decode("utf-8", "replace").replace("\x00", "\ufffd")
    assert counters() == {("rejected", str(reason)): 1}
    assert Meter.objects.get(public_id="alice").last_seq is None


def test_rejected_ack_goes_to_the_publishers_topic_with_the_seq_when_readable(world):
    [outcome] = readings_record([world.message(signed(world.bob.secret, world.body(seq=9)))])

    assert outcome.ack_topic == "grid/north/meters/alice/ack"
    assert json.loads(outcome.ack_payload()) == {"seq": 9, "status": "rejected", "reason": "bad_signature"}


def test_bad_topic_gets_no_ack(world):
    [outcome] = readings_record([world.message(world.signed().payload, "grid/north/alice")])

    assert outcome.reason == Reason.BAD_TOPIC
    assert outcome.ack_topic is None


def test_inactive_meter_is_rejected(world):
    Meter.objects.filter(public_id="alice").update(active=False)

    [outcome] = readings_record([world.signed()])

    assert outcome.reason == Reason.INACTIVE_METER
    assert Reading.objects.count() == 0


def test_accepted_reading_is_stored_with_its_values_and_the_meter_progress(world):
    [outcome] = readings_record([world.signed(v_min=229.35, v_max=241)])

    assert (outcome.status, outcome.reason, outcome.seq) == (Status.ACCEPTED, None, 1)
    assert json.loads(outcome.ack_payload()) == {"seq": 1, "status": "accepted", "reason": None}
    reading = Reading.objects.get()
    assert (reading.meter.public_id, reading.interval_start, reading.import_wh, reading.export_wh) == (
        "alice",
        START,
        120,
        0,
    )
    assert (reading.import_total_wh, reading.seq, reading.received_at, reading.late) == (120, 1, NOW, False)
    assert (reading.v_min_dv, reading.v_max_dv) == (2294, 2410)  # 2293.5 rounds half to even
    meter = Meter.objects.get(public_id="alice")
    assert (meter.last_seq, meter.last_interval_start, meter.last_import_total_wh, meter.last_seen_at) == (
        1,
        START,
        120,
        NOW,
    )
    assert counters() == {("accepted", ""): 1}
    assert RejectedReading.objects.count() == 0


def test_signature_over_a_reordered_body_with_spaces_and_unicode_still_verifies(world):
    # The meter serialised its keys in its own order, with spaces, and the
    # grid slug is matched as text: only the canonical form is signed.
    text = (
        '{ "sig": "SIG", "period_s": 3600, "meter": "alice", "v": 1, "seq": 1,\n'
        '  "export_total_wh": 0, "import_total_wh": 120, "period_start": "2026-01-02T00:00:00+00:00",'
        ' "export_wh": 0, "import_wh": 120, "v_max": 241.25 }'
    )
    [outcome] = readings_record([alice_signed_raw(world, text)])

    assert outcome.status == Status.ACCEPTED, outcome.detail
    assert Reading.objects.get().v_max_dv == 2412


def test_resent_reading_is_a_duplicate_stored_once(world):
    first = world.signed()
    assert readings_record([first])[0].status == Status.ACCEPTED

    [again] = readings_record([first])

    assert (again.status, again.reason, again.seq) == (Status.DUPLICATE, None, 1)
    assert json.loads(again.ack_payload()) == {"seq": 1, "status": "duplicate", "reason": None}
    assert Reading.objects.count() == 1
    assert counters() == {("accepted", ""): 1, ("duplicate", ""): 1}


def test_same_reading_twice_in_one_batch_is_stored_once(world):
    first = world.signed()

    outcomes = readings_record([first, first])

    assert [o.status for o in outcomes] == [Status.ACCEPTED, Status.DUPLICATE]
    assert Reading.objects.count() == 1


def test_same_interval_with_other_content_is_a_conflict_kept_for_operators(world):
    readings_record([world.signed()])

    [outcome] = readings_record([world.signed(seq=2, import_wh=130, import_total_wh=130)])

    assert (outcome.status, outcome.reason) == (Status.REJECTED, Reason.CONFLICT)
    assert "import_wh 120→130" in outcome.detail
    assert Reading.objects.get().import_wh == 120
    kept = RejectedReading.objects.get()
    assert (kept.reason, kept.meter_public_id, kept.seq) == ("conflict", "alice", 2)
    assert json.loads(kept.payload)["import_wh"] == 130


def test_stale_seq_and_an_interval_out_of_order_are_rejected(world):
    stream = MeterStream("north", "alice", world.alice.secret, START)
    readings_record([world.message(stream.payload(0)), world.message(stream.payload(1))])
    older_seq = signed(world.alice.secret, {**stream.body(2), "seq": 2})
    earlier_interval = signed(world.alice.secret, reading_body("alice", 7, START - HOUR, import_wh=1))

    outcomes = readings_record([world.message(older_seq), world.message(earlier_interval)])

    assert [(o.status, o.reason) for o in outcomes] == [(Status.REJECTED, Reason.STALE_SEQ)] * 2
    assert Reading.objects.count() == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, Status.ACCEPTED),
        ({"import_wh": 99}, Reason.TOTALS_INCONSISTENT),  # next interval: must equal the rise
        ({"import_total_wh": 100}, Reason.TOTALS_INCONSISTENT),  # total went down
        ({"export_wh": 5, "export_total_wh": 5}, Status.ACCEPTED),
        ({"export_wh": 5}, Reason.TOTALS_INCONSISTENT),
    ],
)
def test_totals_must_follow_the_previous_reading(world, change, expected):
    stream = MeterStream("north", "alice", world.alice.secret, START)
    readings_record([world.message(stream.payload(0))])

    [outcome] = readings_record([world.message(signed(world.alice.secret, {**stream.body(1), **change}))])

    assert (outcome.reason or outcome.status) == expected, outcome.detail
    assert Reading.objects.count() == (2 if expected == Status.ACCEPTED else 1)


def test_after_a_gap_totals_must_rise_at_least_by_the_interval(world):
    stream = MeterStream("north", "alice", world.alice.secret, START)
    readings_record([world.message(stream.payload(0))])
    # Intervals 1 and 2 were never sent; interval 3's total includes their energy.
    skipped = stream.body(3)
    too_little = {**skipped, "seq": 4, "import_total_wh": stream.body(0)["import_total_wh"] + skipped["import_wh"] - 1}

    rejected = readings_record([world.message(signed(world.alice.secret, too_little))])
    accepted = readings_record([world.message(signed(world.alice.secret, skipped))])

    assert rejected[0].reason == Reason.TOTALS_INCONSISTENT
    assert accepted[0].status == Status.ACCEPTED
    assert Reading.objects.count() == 2


def test_a_meter_catching_up_is_verified_in_seq_order_within_a_batch(world):
    stream = MeterStream("north", "alice", world.alice.secret, START)
    messages = [world.message(stream.payload(index)) for index in (4, 2, 0, 3, 1)]

    outcomes = readings_record(messages)

    assert [o.status for o in outcomes] == [Status.ACCEPTED] * 5
    assert [o.seq for o in outcomes] == [5, 3, 1, 4, 2]  # in the order given, for the acks
    assert list(Reading.objects.order_by("interval_start").values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    assert Meter.objects.get(public_id="alice").last_seq == 5


def test_one_bad_message_never_fails_its_neighbours(world):
    stream = MeterStream("north", "alice", world.alice.secret, START)
    bob = MeterStream("north", "bob", world.bob.secret, START)
    messages = [
        world.message(stream.payload(0)),
        world.message(b"{broken"),
        world.message(bob.payload(0), bob.topic),
        world.message(signed(world.bob.secret, stream.body(1))),  # Alice's reading, Bob's key
        world.message(stream.payload(1)),
    ]

    outcomes = readings_record(messages)

    assert [o.reason or o.status for o in outcomes] == [
        Status.ACCEPTED,
        Reason.BAD_JSON,
        Status.ACCEPTED,
        Reason.BAD_SIGNATURE,
        Status.ACCEPTED,
    ]
    assert Reading.objects.count() == 3
    assert counters() == {("accepted", ""): 3, ("rejected", "bad_json"): 1, ("rejected", "bad_signature"): 1}


def test_late_reading_is_accepted_flagged_and_counted(world):
    grid = world.alice.meter.grid
    grid_mark_settled(grid.pk, START + 2 * HOUR)

    [outcome] = readings_record([world.signed()])

    assert (outcome.status, outcome.late) == (Status.ACCEPTED, True)
    reading = Reading.objects.get()
    assert (reading.late, reading.settled_in) == (True, None)
    assert counters() == {("accepted", "late"): 1}


def test_clock_skew_allows_five_minutes(world):
    # Interval [START, START + 1 h) may arrive from 5 minutes before it ends.
    early = InboundMessage(world.signed().topic, world.signed().payload, START + HOUR - timedelta(seconds=300))
    too_early = InboundMessage(early.topic, early.payload, START + HOUR - timedelta(seconds=301))

    assert readings_record([too_early])[0].reason == Reason.FUTURE_PERIOD
    assert readings_record([early])[0].status == Status.ACCEPTED


def test_reading_stored_by_another_path_is_found_by_the_fallback(world):
    # The meter's progress does not know this row: the bulk insert collides,
    # and the batch is decided again against the table.
    reading_make(world.alice.meter, START, 100, seq=1, received_at=NOW)
    stream = MeterStream("north", "alice", world.alice.secret, START)
    bob = MeterStream("north", "bob", world.bob.secret, START)
    conflicting = signed(world.alice.secret, {**stream.body(0), "import_wh": 5, "import_total_wh": 5})

    outcomes = readings_record(
        [world.message(stream.payload(0)), world.message(bob.payload(0), bob.topic), world.message(conflicting)]
    )

    assert [o.reason or o.status for o in outcomes] == [Status.DUPLICATE, Status.ACCEPTED, Reason.CONFLICT]
    assert Reading.objects.count() == 2


def test_rotated_secret_takes_effect_at_once(world):
    old_payload = world.signed().payload
    readings_record([world.signed()])  # warms the per-process secret cache
    new_secret = meter_rotate_secret(Meter.objects.get(public_id="alice"))
    second = reading_body("alice", 2, START + HOUR, import_wh=10, import_total_wh=130)

    stale_key = readings_record([world.message(signed(world.alice.secret, second))])
    new_key = readings_record([world.message(signed(new_secret, second))])

    assert old_payload  # signed with the old key
    assert stale_key[0].reason == Reason.BAD_SIGNATURE
    assert new_key[0].status == Status.ACCEPTED


def test_rejects_are_bounded_to_the_newest(world, monkeypatch):
    monkeypatch.setattr(ingest, "REJECTS_KEPT", 5)

    for round_ in range(3):
        readings_record([world.message(f'{{"round": {round_}, "n": {n}'.encode()) for n in range(4)])

    kept = list(RejectedReading.objects.order_by("pk").values_list("payload", flat=True))
    assert kept == ['{"round": 1, "n": 3', *[f'{{"round": 2, "n": {n}' for n in range(4)]]
    assert counters() == {("rejected", "bad_json"): 12}


def test_reject_payload_is_cut_to_4_kib_and_nul_safe(world):
    message = world.message(b"\x00" + b"x" * 10_000)

    readings_record([message])

    kept = RejectedReading.objects.get()
    assert len(kept.payload) == 4096
    assert kept.payload.startswith("\ufffdxxx")


def test_the_plain_orm_path_gives_the_same_outcomes(world, monkeypatch):
    # SQLite (the embedded default) has no COPY: the ORM path must agree.
    monkeypatch.setattr(ingest, "_fast_sql", lambda: False)
    stream = MeterStream("north", "alice", world.alice.secret, START)

    first = readings_record([world.message(stream.payload(i)) for i in range(3)] + [world.message(b"[]")])
    again = readings_record([world.message(stream.payload(2)), world.message(stream.payload(3))])

    assert [o.reason or o.status for o in first] == [Status.ACCEPTED] * 3 + [Reason.NOT_OBJECT]
    assert [o.status for o in again] == [Status.DUPLICATE, Status.ACCEPTED]
    meter = Meter.objects.get(public_id="alice")
    assert (meter.last_seq, meter.last_interval_start, meter.last_seen_at) == (4, START + 3 * HOUR, NOW)
    assert Reading.objects.count() == 4


def test_sealed_secret_cache_is_keyed_by_the_sealed_form(world):
    meter = Meter.objects.get(public_id="alice")
    meter.secret_sealed = secret_seal("golden-secret", "alice")
    meter.save(update_fields=["secret_sealed"])

    [outcome] = readings_record([world.message(signed("golden-secret", world.body()))])

    assert outcome.status == Status.ACCEPTED


GOLDEN = json.loads((Path(__file__).parent / "golden" / "readings.json").read_text(encoding="utf-8"))


def test_golden_payloads_get_their_expected_acks():
    grid = grid_make(GOLDEN["grid"]["slug"], now=T0, interval_s=GOLDEN["grid"]["interval_s"])
    meter = meter_issue(grid, GOLDEN["meter"]["public_id"]).meter
    meter.secret_sealed = secret_seal(GOLDEN["meter"]["secret"], meter.public_id)
    meter.save(update_fields=["secret_sealed"])

    for case in GOLDEN["cases"]:
        message = InboundMessage(case["topic"], case["payload"].encode(), parse_utc(case["received_at"]))
        [outcome] = readings_record([message])
        assert {"status": str(outcome.status), "reason": outcome.reason} == case["expect"], case["name"]

    assert Reading.objects.count() == sum(case["expect"]["status"] == "accepted" for case in GOLDEN["cases"])
    assert Reading.objects.get(seq=2).v_min_dv == 2284
