"""The firmware's golden payloads are the contract: the platform must accept
every golden reading as the firmware signs it (read as files, never imported)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meters.protocol import (
    MeterRef,
    Reason,
    Rejected,
    canonical_body,
    payload_decode,
    reading_verify,
    sign,
    topic_parse,
)

GOLDEN = Path(__file__).resolve().parents[2] / "firmware" / "golden" / "cases.json"
READINGS = [case for case in json.loads(GOLDEN.read_text()) if case["name"].startswith("reading-")]


@pytest.mark.parametrize("case", READINGS, ids=lambda case: case["name"])
def test_every_golden_reading_is_accepted_as_signed(case):
    raw = json.dumps(case["payload"], ensure_ascii=False).encode()
    body = payload_decode(raw)
    topic = topic_parse(case["topic"])
    meter = MeterRef(public_id=topic.meter, grid=topic.grid, active=True, interval_s=body["period_s"])
    assert canonical_body(body).decode() == case["canonical"]
    assert sign(case["secret"], body) == case["sig"]
    period_start = datetime.fromisoformat(body["period_start"].replace("Z", "+00:00"))
    now = period_start + timedelta(seconds=body["period_s"] + 60)
    report = reading_verify(topic, body, meter, case["secret"], now)
    assert (report.seq, report.import_wh, report.export_wh) == (body["seq"], body["import_wh"], body["export_wh"])


def test_the_clock_note_is_checked_and_signed():
    case = next(case for case in READINGS if "clock" in case["payload"])
    body = dict(case["payload"])
    body["clock"] = "sundial"
    body["sig"] = sign(case["secret"], body)
    topic = topic_parse(case["topic"])
    meter = MeterRef(public_id=topic.meter, grid=topic.grid, active=True, interval_s=body["period_s"])
    with pytest.raises(Rejected) as refused:
        reading_verify(topic, body, meter, case["secret"], datetime(2030, 1, 1, tzinfo=UTC))
    assert refused.value.reason == Reason.BAD_FIELD
