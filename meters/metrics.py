"""Ingest metrics: a selector for operators' pages and the Prometheus ``/metrics`` view.

The counts live in the database (``IngestCounter``, added to in the same
transaction as the readings), not in the ingest's memory: they survive
restarts, several ingest processes add up, and the web process that serves
``/metrics`` sees what the ingest process counted.

Exposed series:

- ``commonwatt_ingest_readings_total{status, reason}``: messages by outcome;
  ``status`` is accepted / duplicate / rejected, ``reason`` the rejection code,
  ``late`` for accepted readings of an already settled interval, else empty.
  Every known series is present from the start (at 0), so rates work at once.
- ``commonwatt_ingest_lag_seconds``: for the newest stored reading, how long
  after its interval ended it was received (meter delay plus broker queue).
- ``commonwatt_ingest_last_reading_age_seconds``: how long ago the newest
  stored reading was received (a stalled ingest or a silent fleet shows here).
- ``commonwatt_ingest_rejects_kept``: rejected messages kept for operators.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .models import IngestCounter, Reading, RejectedReading
from .protocol import Reason, Status

KNOWN_SERIES = [
    (str(Status.ACCEPTED), ""),
    (str(Status.ACCEPTED), "late"),
    (str(Status.DUPLICATE), ""),
    *[(str(Status.REJECTED), str(reason)) for reason in Reason],
]


@dataclass(frozen=True, slots=True)
class IngestStats:
    """What the ingest did since the database was created, and how fresh it is.

    ``counts`` maps (status, reason) to messages; ``lag_s`` is received_at minus
    the end of the interval of the newest stored reading, ``age_s`` now minus
    its received_at (both whole seconds, None before the first reading)."""

    counts: dict[tuple[str, str], int]
    last_received_at: datetime | None
    lag_s: int | None
    age_s: int | None
    rejects_kept: int

    @property
    def accepted(self) -> int:
        return sum(count for (status, _), count in self.counts.items() if status == Status.ACCEPTED)

    @property
    def duplicate(self) -> int:
        return self.counts.get((str(Status.DUPLICATE), ""), 0)

    @property
    def rejected(self) -> int:
        return sum(count for (status, _), count in self.counts.items() if status == Status.REJECTED)

    def rejected_by_reason(self) -> dict[str, int]:
        return {reason: count for (status, reason), count in self.counts.items() if status == Status.REJECTED and count}


def ingest_stats(now: datetime) -> IngestStats:
    """The selector behind ``/metrics`` and the operators' ingest panel."""
    counts = dict.fromkeys(KNOWN_SERIES, 0)
    for status, reason, count in IngestCounter.objects.values_list("status", "reason", "count"):
        counts[(status, reason)] = count
    # The newest reading by primary key: an index scan of one row, never a sort.
    newest = Reading.objects.order_by("-pk").values_list("received_at", "interval_start", "meter__grid__interval_s")
    row = newest.first()
    lag_s = age_s = None
    received_at = None
    if row is not None:
        received_at, start, interval_s = row
        lag_s = int((received_at - (start + timedelta(seconds=interval_s))).total_seconds())
        age_s = max(0, int((now - received_at).total_seconds()))
    return IngestStats(counts, received_at, lag_s, age_s, RejectedReading.objects.count())


class IngestCollector:
    """A prometheus-client collector that reads ``ingest_stats`` on each scrape."""

    def collect(self):
        stats = ingest_stats(timezone.now())
        readings = CounterMetricFamily(
            "commonwatt_ingest_readings",
            "MQTT reading messages by outcome (status) and rejection reason, since the database was created",
            labels=["status", "reason"],
        )
        for (status, reason), count in sorted(stats.counts.items()):
            readings.add_metric([status, reason], count)
        yield readings
        for name, help_text, value in (
            (
                "commonwatt_ingest_lag_seconds",
                "Newest stored reading: seconds from the end of its interval to its receipt",
                stats.lag_s,
            ),
            (
                "commonwatt_ingest_last_reading_age_seconds",
                "Seconds since the newest stored reading was received",
                stats.age_s,
            ),
            ("commonwatt_ingest_rejects_kept", "Rejected messages kept for operators", stats.rejects_kept),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=value)


registry = CollectorRegistry(auto_describe=False)
registry.register(IngestCollector())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. With ``METRICS_TOKEN`` set, a scrape must send
    ``Authorization: Bearer <token>``; otherwise restrict it at the proxy."""
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return HttpResponse("metrics need the bearer token\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
