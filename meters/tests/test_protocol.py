"""The MQTT contract as pure functions: no database, no broker, no clock."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meters.protocol import (
    MAX_PAYLOAD_BYTES,
    MeterProgress,
    MeterRef,
    Reason,
    Rejected,
    Status,
    TopicRef,
    ack_payload,
    canonical_body,
    payload_decode,
    reading_follows,
    reading_verify,
    sign,
    signature_valid,
    topic_ack,
    topic_parse,
)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "readings.json").read_text(encoding="utf-8"))
SECRET = "s3cret-Meter-Key_0123456789abcdef"
ALICE = MeterRef(public_id="alice", grid="north", active=True, interval_s=3600)
TOPIC = TopicRef(grid="north", meter="alice")
START = datetime(2026, 1, 2, tzinfo=UTC)
NOW = START + timedelta(hours=5)


def body(**changes) -> dict:
    base = {
        "v": 1,
        "meter": "alice",
        "seq": 7,
        "period_start": "2026-01-02T00:00:00Z",
        "period_s": 3600,
        "import_wh": 120,
        "export_wh": 0,
        "import_total_wh": 5120,
        "export_total_wh": 0,
    }
    return {**base, **changes}


def signed(**changes) -> dict:
    unsigned = body(**changes)
    return {**unsigned, "sig": sign(SECRET, unsigned)}


def reason_of(call) -> Reason:
    with pytest.raises(Rejected) as caught:
        call()
    assert caught.value.detail
    return caught.value.reason


# -- signing ----------------------------------------------------------------


def test_canonical_body_sorts_keys_drops_sig_and_keeps_unicode_as_utf8():
    assert canonical_body({"b": 1, "sig": "x", "a": "ü", "c": [1, {"z": 2, "y": 3}]}) == (
        '{"a":"ü","b":1,"c":[1,{"y":3,"z":2}]}'.encode()
    )


def test_sign_is_hmac_sha256_of_the_canonical_body_keyed_with_the_utf8_secret():
    payload = {"v": 1, "meter": "m-ü", "sig": "ignored"}
    expected = hmac.new("kéy".encode(), b'{"meter":"m-\xc3\xbc","v":1}', hashlib.sha256).hexdigest()

    assert sign("kéy", payload) == expected
    assert sign("kéy", payload) == sign("kéy", {"meter": "m-ü", "v": 1})


def test_signature_is_independent_of_key_order_and_spacing():
    payload = signed()
    reordered = json.loads(json.dumps(dict(reversed(list(payload.items()))), indent=4))

    assert signature_valid(SECRET, reordered)


@pytest.mark.parametrize("sig", [None, 7, "", "ab", "G" * 64, "A" * 64])
def test_malformed_signatures_never_verify(sig):
    assert not signature_valid(SECRET, {**body(), "sig": sig})


# -- golden payloads (the contract with firmware makers) ----------------------------


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[case["name"] for case in GOLDEN["cases"]])
def test_golden_canonical_bodies_and_signatures(case):
    payload = json.loads(case["payload"])

    assert canonical_body(payload) == case["canonical"].encode()
    if case.get("signed_with") == "meter":
        raw = hmac.new(GOLDEN["meter"]["secret"].encode(), case["canonical"].encode(), hashlib.sha256).hexdigest()
        assert case["sig"] == raw == sign(GOLDEN["meter"]["secret"], payload)


# -- topics and acks ------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "grid/north/meters/alice",
        "grid/north/meters/alice/status",
        "grid/north/meters/alice/readings/extra",
        "grid//meters/alice/readings",
        "grid/north/meters//readings",
        "grids/north/meters/alice/readings",
        "grid/north/meter/alice/readings",
        "grid/+/meters/alice/readings",
        "grid/north/meters/#/readings",
        "",
    ],
)
def test_topic_parse_refuses_anything_but_a_readings_topic(topic):
    assert reason_of(lambda: topic_parse(topic)) == Reason.BAD_TOPIC


def test_topic_parse_and_ack_topic():
    assert topic_parse("grid/north/meters/alice/readings") == TOPIC
    assert topic_ack("north", "alice") == "grid/north/meters/alice/ack"


def test_ack_payload():
    assert json.loads(ack_payload(7, Status.REJECTED, Reason.STALE_SEQ)) == {
        "seq": 7,
        "status": "rejected",
        "reason": "stale_seq",
    }
    assert json.loads(ack_payload(None, Status.ACCEPTED, None)) == {"seq": None, "status": "accepted", "reason": None}


# -- decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"x" * (MAX_PAYLOAD_BYTES + 1), Reason.TOO_LARGE),
        (b"", Reason.BAD_JSON),
        (b"{", Reason.BAD_JSON),
        (b"\xc3\x28", Reason.BAD_JSON),
        (b"\xef\xbb\xbf{}", Reason.BAD_JSON),  # a UTF-8 BOM
        (b'{"v": Infinity}', Reason.BAD_JSON),
        (b'{"v": 1, "v": 2}', Reason.BAD_JSON),
        (b"[" * 10_000, Reason.BAD_JSON),
        (b"[]", Reason.NOT_OBJECT),
        (b"42", Reason.NOT_OBJECT),
        (b"true", Reason.NOT_OBJECT),
    ],
)
def test_payload_decode_refusals(raw, reason):
    assert reason_of(lambda: payload_decode(raw)) == reason


def test_payload_decode_accepts_an_object_up_to_the_limit():
    raw = b'{"pad": "' + b"x" * (MAX_PAYLOAD_BYTES - 11) + b'"}'
    assert len(raw) == MAX_PAYLOAD_BYTES
    assert payload_decode(raw)["pad"].startswith("xxx")


# -- verification ------------------------------------------------------------------------


def verify(payload, meter=ALICE, secret=SECRET, topic=TOPIC, now=NOW):
    return reading_verify(topic, payload, meter, secret, now)


def test_a_good_reading_becomes_a_report():
    report = verify(signed(v_min=229.95, v_max=241))

    assert report.period_start == START
    assert (report.meter, report.seq, report.import_wh, report.import_total_wh) == ("alice", 7, 120, 5120)
    assert (report.v_min_dv, report.v_max_dv) == (2300, 2410)


@pytest.mark.parametrize(
    ("payload", "kwargs", "reason"),
    [
        (signed(meter=7), {}, Reason.BAD_FIELD),
        (signed(meter="bob"), {}, Reason.TOPIC_MISMATCH),
        (signed(), {"meter": None}, Reason.UNKNOWN_METER),
        (signed(), {"topic": TopicRef("south", "alice")}, Reason.TOPIC_MISMATCH),
        (signed(), {"meter": MeterRef("alice", "north", False, 3600)}, Reason.INACTIVE_METER),
        (signed(v=2), {}, Reason.BAD_VERSION),
        (signed(v=1.0), {}, Reason.BAD_VERSION),
        (signed(), {"secret": "another meter's secret"}, Reason.BAD_SIGNATURE),
        (signed(import_wh=True), {}, Reason.BAD_FIELD),
        (signed(export_total_wh=0.0), {}, Reason.BAD_FIELD),
        (signed(seq=None), {}, Reason.BAD_FIELD),
        (signed(extra=1), {}, Reason.BAD_FIELD),
        (signed(period_start=20260102), {}, Reason.BAD_FIELD),
        (signed(period_start="2026-01-02 00:00:00Z"), {}, Reason.BAD_FIELD),
        (signed(v_max=[230]), {}, Reason.BAD_FIELD),
        (signed(v_max=1e6), {}, Reason.BAD_FIELD),
        (signed(import_wh=-5), {}, Reason.NEGATIVE_VALUE),
        (signed(v_min=-0.5), {}, Reason.NEGATIVE_VALUE),
        (signed(period_s=1800), {}, Reason.UNALIGNED_PERIOD),
        (signed(period_start="2026-01-02T00:00:01Z"), {}, Reason.UNALIGNED_PERIOD),
        (signed(period_start="2026-01-02T05:00:00Z"), {}, Reason.FUTURE_PERIOD),
    ],
)
def test_verification_refusals(payload, kwargs, reason):
    assert reason_of(lambda: verify(payload, **kwargs)) == reason


def test_an_offset_timestamp_is_read_in_utc():
    report = verify(signed(period_start="2026-01-02T05:30:00+05:30"))

    assert report.period_start == START


@pytest.mark.parametrize(("seconds_before_end", "ok"), [(300, True), (301, False)])
def test_future_means_the_interval_has_not_ended_give_or_take_five_minutes(seconds_before_end, ok):
    now = START + timedelta(hours=1, seconds=-seconds_before_end)
    if ok:
        assert verify(signed(), now=now).seq == 7
    else:
        assert reason_of(lambda: verify(signed(), now=now)) == Reason.FUTURE_PERIOD


# -- the rules against the previous reading -------------------------------------------


PREVIOUS = MeterProgress(seq=6, period_start=START - timedelta(hours=1), import_total_wh=5000, export_total_wh=40)


@pytest.mark.parametrize(
    ("previous", "changes", "reason"),
    [
        (MeterProgress(), {"export_total_wh": 0}, None),  # the first reading
        (MeterProgress(), {"import_total_wh": 119}, Reason.TOTALS_INCONSISTENT),
        (PREVIOUS, {"export_total_wh": 40}, None),  # next interval, exact
        (PREVIOUS, {"export_total_wh": 39}, Reason.TOTALS_INCONSISTENT),  # fell
        (PREVIOUS, {"import_total_wh": 5121, "export_total_wh": 40}, Reason.TOTALS_INCONSISTENT),  # 121 ≠ 120
        (PREVIOUS, {"seq": 6, "export_total_wh": 40}, Reason.STALE_SEQ),
        (PREVIOUS, {"seq": 5, "export_total_wh": 40}, Reason.STALE_SEQ),
        (
            PREVIOUS,
            {"period_start": "2026-01-01T23:00:00Z", "seq": 8, "export_total_wh": 40},
            Reason.STALE_SEQ,
        ),  # the same interval as the last, new seq
        (  # a gap of two intervals: totals rose by more than this interval
            PREVIOUS,
            {"period_start": "2026-01-02T02:00:00Z", "import_total_wh": 5400, "export_total_wh": 40},
            None,
        ),
        (
            PREVIOUS,
            {"period_start": "2026-01-02T02:00:00Z", "import_total_wh": 5119, "export_total_wh": 40},
            Reason.TOTALS_INCONSISTENT,
        ),
    ],
)
def test_reading_follows(previous, changes, reason):
    report = verify(signed(**changes))

    if reason is None:
        reading_follows(previous, report)
    else:
        assert reason_of(lambda: reading_follows(previous, report)) == reason


def test_progress_after_a_report():
    report = verify(signed())

    assert MeterProgress.after(report) == MeterProgress(7, START, 5120, 0)


@pytest.mark.parametrize("seq", [None, 0, 7, 2**53 - 1])
@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("reason", [None, *Reason])
def test_ack_payload_is_byte_for_byte_what_json_dumps_gives(seq, status, reason):
    expected = json.dumps(
        {"seq": seq, "status": str(status), "reason": str(reason) if reason else None}, separators=(",", ":")
    ).encode()
    assert ack_payload(seq, status, reason) == expected
