"""Ingest counters and lag: the ``ingest_stats`` selector and ``/metrics``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meters.ingest import InboundMessage, readings_record
from meters.metrics import ingest_stats
from meters.services import grid_mark_settled
from meters.tests.factories import HOUR, T0, grid_make, meter_issue
from meters.tests.readings import MeterStream

pytestmark = pytest.mark.django_db

START = T0 + 24 * HOUR


@pytest.fixture
def recorded():
    """Alice: 3 accepted (1 late), 1 duplicate, 2 rejected (bad_json, bad_signature);
    the last accepted one received 90 s after its interval ended."""
    grid = grid_make("north", now=T0)
    alice = meter_issue(grid, "alice")
    stream = MeterStream("north", "alice", alice.secret, START)
    grid_mark_settled(grid.pk, START + HOUR)
    at = START + 3 * HOUR
    messages = [
        InboundMessage(stream.topic, stream.payload(0), at),  # late: [START, +1 h) is settled
        InboundMessage(stream.topic, stream.payload(1), at),
        InboundMessage(stream.topic, stream.payload(1), at),
        InboundMessage(stream.topic, b"{", at),
        InboundMessage(stream.topic, stream.payload(2).replace(b'"seq": 3', b'"seq": 4'), at),
    ]
    readings_record(messages)
    readings_record([InboundMessage(stream.topic, stream.payload(2), at + timedelta(seconds=90))])


def test_ingest_stats_counts_outcomes_and_measures_lag(recorded):
    stats = ingest_stats(START + 3 * HOUR + timedelta(minutes=10))

    assert (stats.accepted, stats.duplicate, stats.rejected) == (3, 1, 2)
    assert stats.counts[("accepted", "late")] == 1
    assert stats.rejected_by_reason() == {"bad_json": 1, "bad_signature": 1}
    assert stats.lag_s == 90  # interval 2 ended at START + 3 h, received 90 s later
    assert stats.age_s == 600 - 90
    assert stats.rejects_kept == 2


def test_ingest_stats_before_any_reading():
    stats = ingest_stats(T0)

    assert (stats.accepted, stats.rejected, stats.lag_s, stats.age_s, stats.last_received_at) == (
        0,
        0,
        None,
        None,
        None,
    )
    assert stats.counts[("rejected", "conflict")] == 0


def test_metrics_endpoint_speaks_prometheus_text(client, recorded):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(response.content.decode())}
    readings = {
        (sample.labels["status"], sample.labels["reason"]): sample.value
        for sample in families["commonwatt_ingest_readings"].samples
        if sample.name == "commonwatt_ingest_readings_total"
    }
    assert readings[("accepted", "")] == 2
    assert readings[("accepted", "late")] == 1
    assert readings[("duplicate", "")] == 1
    assert readings[("rejected", "bad_signature")] == 1
    assert readings[("rejected", "stale_seq")] == 0  # every known series, from the start
    assert families["commonwatt_ingest_lag_seconds"].samples[0].value == 90
    assert families["commonwatt_ingest_rejects_kept"].samples[0].value == 2


def test_metrics_token_is_required_when_set(client, settings, recorded):
    settings.METRICS_TOKEN = "scrape-me"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200
