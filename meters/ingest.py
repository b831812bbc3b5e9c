"""Record readings that arrived over MQTT: ``readings_record`` is the one plain
function the ``ingest_mqtt`` command hands every batch of messages to.

A batch is one database transaction:

1. decode each message (topic, size, JSON) without the database;
2. lock the meters the topics name (``SELECT ... FOR UPDATE``, by id, so two
   ingest processes never verify the same meter against stale progress);
3. verify each reading (``protocol.reading_verify``: meter, signature, fields,
   period), then, meter by meter in ``seq`` order (a meter catching up sends
   many at once), against the meter's last accepted reading
   (``protocol.reading_follows``) or the stored reading of the same interval
   (duplicate or conflict);
4. insert the accepted readings in bulk (COPY on PostgreSQL), save each meter's
   progress, keep the rejects (the newest ``REJECTS_KEPT``, payloads cut to
   4 KiB) and add to the per-outcome counters.

Bad input never raises: every message gets an ``Outcome``. Only a database
failure (or a bug) raises, and then nothing of the batch is committed, so the
caller must not ack any of it and may retry the same batch.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction

from utility import clock

from .credentials import secret_unseal
from .models import Grid, Meter, Reading, RejectedReading
from .protocol import (
    MeterProgress,
    MeterRef,
    ReadingReport,
    Reason,
    Rejected,
    Status,
    TopicRef,
    ack_payload,
    payload_decode,
    reading_follows,
    reading_verify,
    topic_ack,
    topic_parse,
)
from .services import reading_is_late

REJECTS_KEPT = 10_000
REJECT_PAYLOAD_BYTES = 4096
SECRET_CACHE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One MQTT message as received; ``received_at`` is when the backend got it."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message, and where its ack goes (``grid``/``meter``
    from the topic; None when the topic could not be parsed: no ack)."""

    status: Status
    reason: Reason | None = None
    detail: str = ""
    grid: str | None = None
    meter: str | None = None
    seq: int | None = None
    late: bool = False

    @property
    def ack_topic(self) -> str | None:
        return topic_ack(self.grid, self.meter) if self.grid and self.meter else None

    def ack_payload(self) -> bytes:
        return ack_payload(self.seq, self.status, self.reason)


@dataclass(frozen=True, slots=True)
class _Decoded:
    index: int
    topic: TopicRef
    body: dict[str, Any]


@dataclass(slots=True)
class _MeterRow:
    pk: int
    grid_pk: int
    ref: MeterRef
    secret_sealed: str
    progress: MeterProgress


@dataclass(frozen=True, slots=True)
class _Verified:
    index: int
    meter: _MeterRow
    report: ReadingReport


@dataclass(slots=True)
class _Decision:
    outcomes: dict[int, Outcome]
    rows: list[tuple[_Verified, bool]]  # accepted readings, with their late flag
    progress: dict[int, MeterProgress]  # meter pk -> its new last accepted reading
    seen: dict[int, datetime]  # meter pk -> latest received_at of an accepted or duplicate


def readings_record(messages: Sequence[InboundMessage]) -> list[Outcome]:
    """Verify and store a batch of readings in one transaction; return one
    ``Outcome`` per message, in the order given.

    Accepted readings are stored once per (meter, interval); a re-sent reading
    with the same content is a ``duplicate`` (stored once), with other content a
    ``conflict`` rejection. Late readings (interval already settled) are
    accepted and flagged. Rejections are stored and counted; raises only on a
    database failure, in which case nothing was committed.
    """
    outcomes: list[Outcome | None] = [None] * len(messages)
    decoded = _decode_all(messages, outcomes)
    with transaction.atomic():
        meters = _meters_lock({item.topic.meter for item in decoded})
        verified = _verify_all(messages, decoded, meters, outcomes)
        try:
            with transaction.atomic():
                decision = _decide(messages, verified, thorough=False)
                _readings_insert(messages, decision.rows)
        except IntegrityError:
            # An interval the meter's progress did not know about is already
            # stored (written by another path): look up every interval and decide
            # again. The meters are locked, so only a writer that bypasses the
            # locks can collide once more; that raises and the caller retries.
            decision = _decide(messages, verified, thorough=True)
            _readings_insert(messages, decision.rows)
        for index, outcome in decision.outcomes.items():
            outcomes[index] = outcome
        _progress_save(decision, verified)
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(messages), "every message has an outcome"
        _rejects_store(messages, done)
        _counters_add(done)
    return done


def _decode_all(messages: Sequence[InboundMessage], outcomes: list[Outcome | None]) -> list[_Decoded]:
    decoded = []
    for index, message in enumerate(messages):
        topic: TopicRef | None = None
        try:
            topic = topic_parse(message.topic)
            decoded.append(_Decoded(index, topic, payload_decode(message.payload)))
        except Rejected as rejected:
            outcomes[index] = _rejected(rejected, topic)
    return decoded


def _rejected(rejected: Rejected, topic: TopicRef | None, body: dict[str, Any] | None = None) -> Outcome:
    seq = body.get("seq") if body is not None else None
    return Outcome(
        Status.REJECTED,
        rejected.reason,
        rejected.detail,
        grid=topic.grid if topic else None,
        meter=topic.meter if topic else None,
        seq=seq if type(seq) is int else None,
    )


def _meters_lock(public_ids: set[str]) -> dict[str, _MeterRow]:
    """The named meters with their grid and progress, locked for this transaction."""
    if not public_ids:
        return {}
    rows = _meters_lock_rows(public_ids)
    meters = {}
    for pk, public_id, active, sealed, grid_pk, slug, interval_s, *progress in rows:
        ref = MeterRef(public_id=public_id, grid=slug, active=active, interval_s=interval_s)
        meters[public_id] = _MeterRow(pk, grid_pk, ref, sealed, MeterProgress(*progress))
    return meters


def _meters_lock_rows(public_ids: set[str]) -> list[tuple]:
    if _fast_sql():
        # The same query as the ORM's below, written out: the ORM prepares every
        # id of the IN list on its own, a cost per reading in a busy batch.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT m.id, m.public_id, m.active, m.secret_sealed, m.grid_id, g.slug, g.interval_s, "
                "m.last_seq, m.last_interval_start, m.last_import_total_wh, m.last_export_total_wh "
                "FROM meters_meter m JOIN meters_grid g ON g.id = m.grid_id "
                "WHERE m.public_id = ANY(%s) ORDER BY m.id FOR UPDATE OF m",
                [sorted(public_ids)],
            )
            return cursor.fetchall()
    return list(
        Meter.objects.select_for_update(of=("self",))
        .filter(public_id__in=public_ids)
        .order_by("pk")
        .values_list(
            "pk",
            "public_id",
            "active",
            "secret_sealed",
            "grid_id",
            "grid__slug",
            "grid__interval_s",
            "last_seq",
            "last_interval_start",
            "last_import_total_wh",
            "last_export_total_wh",
        )
    )


_secrets: dict[tuple[str, str], str] = {}


def _secret(meter: _MeterRow) -> str:
    """The meter's plain secret, unsealed once per process and sealed form
    (a rotated secret has a new sealed form, so the cache never serves the old one).
    A secret that cannot be unsealed (``METER_SECRET_KEY`` changed) raises:
    a misconfigured backend must not reject readings meters would then drop."""
    key = (meter.ref.public_id, meter.secret_sealed)
    secret = _secrets.get(key)
    if secret is None:
        secret = secret_unseal(meter.secret_sealed, meter.ref.public_id)
        if len(_secrets) >= SECRET_CACHE_MAX:
            _secrets.clear()
        _secrets[key] = secret
    return secret


def _verify_all(
    messages: Sequence[InboundMessage],
    decoded: list[_Decoded],
    meters: dict[str, _MeterRow],
    outcomes: list[Outcome | None],
) -> list[_Verified]:
    verified = []
    for item in decoded:
        meter = meters.get(item.topic.meter)
        try:
            report = reading_verify(
                item.topic,
                item.body,
                meter.ref if meter else None,
                _secret(meter) if meter else None,
                messages[item.index].received_at,
            )
        except Rejected as rejected:
            outcomes[item.index] = _rejected(rejected, item.topic, item.body)
            continue
        assert meter is not None
        verified.append(_Verified(item.index, meter, report))
    return verified


def _decide(messages: Sequence[InboundMessage], verified: list[_Verified], *, thorough: bool) -> _Decision:
    """Meter by meter, in seq order: duplicate, conflict, or the rules against
    the previous reading. ``thorough`` looks up every interval in the table,
    not only those at or before the meter's last accepted one."""
    stored = _stored_contents(verified, thorough)
    grids = {grid.pk: grid for grid in Grid.objects.filter(pk__in={item.meter.grid_pk for item in verified})}
    decision = _Decision({}, [], {}, {})
    by_meter: dict[int, list[_Verified]] = defaultdict(list)
    for item in verified:
        by_meter[item.meter.pk].append(item)
    for meter_pk, items in by_meter.items():
        progress = items[0].meter.progress
        for item in sorted(items, key=lambda each: each.report.seq):
            report, key = item.report, (meter_pk, item.report.period_start)
            received_at = messages[item.index].received_at
            outcome = Outcome(Status.DUPLICATE, grid=item.meter.ref.grid, meter=report.meter, seq=report.seq)
            if key in stored and stored[key] != report.content():
                conflict = Rejected(Reason.CONFLICT, _conflict_detail(stored[key], report))
                outcome = _rejected(conflict, _ref(item), {"seq": report.seq})
            elif key not in stored:
                try:
                    reading_follows(progress, report)
                except Rejected as rejected:
                    decision.outcomes[item.index] = _rejected(rejected, _ref(item), {"seq": report.seq})
                    continue
                late = reading_is_late(grids[item.meter.grid_pk], report.period_start)
                outcome = Outcome(
                    Status.ACCEPTED, grid=item.meter.ref.grid, meter=report.meter, seq=report.seq, late=late
                )
                decision.rows.append((item, late))
                stored[key] = report.content()
                progress = MeterProgress.after(report)
                decision.progress[meter_pk] = progress
            if outcome.status != Status.REJECTED:
                decision.seen[meter_pk] = max(received_at, decision.seen.get(meter_pk, received_at))
            decision.outcomes[item.index] = outcome
    return decision


def _ref(item: _Verified) -> TopicRef:
    return TopicRef(item.meter.ref.grid, item.meter.ref.public_id)


def _conflict_detail(stored: tuple, report: ReadingReport) -> str:
    names = ("seq", "import_wh", "export_wh", "import_total_wh", "export_total_wh", "v_min_dv", "v_max_dv")
    differ = [
        f"{name} {old}→{new}" for name, old, new in zip(names, stored, report.content(), strict=True) if old != new
    ]
    return f"interval already stored with other values: {', '.join(differ)}"


def _stored_contents(verified: list[_Verified], thorough: bool) -> dict[tuple[int, datetime], tuple]:
    """Stored readings of the batch's (meter, interval) pairs. Normally only
    intervals at or before a meter's last accepted one can exist (re-sends)."""
    wanted = {
        (item.meter.pk, item.report.period_start)
        for item in verified
        if thorough
        or (
            item.meter.progress.period_start is not None
            and item.report.period_start <= item.meter.progress.period_start
        )
    }
    if not wanted:
        return {}
    rows = Reading.objects.filter(
        meter_id__in={pk for pk, _ in wanted}, interval_start__in={start for _, start in wanted}
    ).values_list(
        "meter_id",
        "interval_start",
        "seq",
        "import_wh",
        "export_wh",
        "import_total_wh",
        "export_total_wh",
        "v_min_dv",
        "v_max_dv",
    )
    return {(pk, start): tuple(content) for pk, start, *content in rows if (pk, start) in wanted}


READING_COLUMNS = (
    "meter_id",
    "interval_start",
    "import_wh",
    "export_wh",
    "import_total_wh",
    "export_total_wh",
    "v_min_dv",
    "v_max_dv",
    "seq",
    "received_at",
    "late",
)


def _fast_sql() -> bool:
    """PostgreSQL gets COPY and one UPDATE per batch; other databases (the
    embedded SQLite default) the plain ORM."""
    return connection.vendor == "postgresql"


def _readings_insert(messages: Sequence[InboundMessage], rows: list[tuple[_Verified, bool]]) -> None:
    if not rows:
        return
    if not _fast_sql():
        Reading.objects.bulk_create(
            Reading(
                meter_id=item.meter.pk,
                **_reading_values(item.report),
                received_at=messages[item.index].received_at,
                late=late,
            )
            for item, late in rows
        )
        return
    buffer = io.StringIO()
    for item, late in rows:
        r = item.report
        buffer.write(
            f"{item.meter.pk}\t{r.period_start.isoformat()}\t{r.import_wh}\t{r.export_wh}\t{r.import_total_wh}\t"
            f"{r.export_total_wh}\t{_copy_value(r.v_min_dv)}\t{_copy_value(r.v_max_dv)}\t{r.seq}\t"
            f"{messages[item.index].received_at.isoformat()}\t{'t' if late else 'f'}\n"
        )
    buffer.seek(0)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.cursor.copy_expert(f"COPY meters_reading ({', '.join(READING_COLUMNS)}) FROM STDIN", buffer)


def _copy_value(value: int | None) -> str:
    return r"\N" if value is None else str(value)


def _reading_values(report: ReadingReport) -> dict[str, Any]:
    return {
        "interval_start": report.period_start,
        "import_wh": report.import_wh,
        "export_wh": report.export_wh,
        "import_total_wh": report.import_total_wh,
        "export_total_wh": report.export_total_wh,
        "v_min_dv": report.v_min_dv,
        "v_max_dv": report.v_max_dv,
        "seq": report.seq,
    }


def _progress_save(decision: _Decision, verified: list[_Verified]) -> None:
    """Each meter's last accepted reading (what the next one is checked
    against) and when it was last heard from."""
    changed = set(decision.progress) | set(decision.seen)
    if not changed:
        return
    current = {item.meter.pk: item.meter.progress for item in verified}
    values = []
    for pk in sorted(changed):
        progress = decision.progress.get(pk, current[pk])
        values.append(
            (
                pk,
                progress.seq,
                progress.period_start,
                progress.import_total_wh,
                progress.export_total_wh,
                decision.seen.get(pk),
            )
        )
    if not _fast_sql():
        for pk, seq, start, import_total_wh, export_total_wh, seen in values:
            fields = {
                "last_seq": seq,
                "last_interval_start": start,
                "last_import_total_wh": import_total_wh,
                "last_export_total_wh": export_total_wh,
            }
            Meter.objects.filter(pk=pk).update(**fields, **({"last_seen_at": seen} if seen else {}))
        return
    # One statement, one array per column: far less Python per meter than a
    # VALUES list (execute_values formats every row on its own).
    columns = [list(column) for column in zip(*values, strict=True)]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.cursor.execute(
            "UPDATE meters_meter AS m SET last_seq = v.seq, last_interval_start = v.start, "
            "last_import_total_wh = v.imp, last_export_total_wh = v.exp, "
            "last_seen_at = COALESCE(v.seen, m.last_seen_at) "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::bigint[], %s::bigint[], "
            "%s::timestamptz[]) AS v(id, seq, start, imp, exp, seen) WHERE m.id = v.id",
            columns,
        )


def _clean(text: str, limit: int) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates.
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")[:limit]


def _rejects_store(messages: Sequence[InboundMessage], outcomes: list[Outcome]) -> None:
    """Keep the rejected messages for operators, the newest ``REJECTS_KEPT`` of them."""
    rejects = [
        RejectedReading(
            topic=_clean(message.topic, 200),
            grid_slug=_clean(outcome.grid or "", 40),
            meter_public_id=_clean(outcome.meter or "", 40),
            seq=outcome.seq,
            reason=str(outcome.reason),
            detail=_clean(outcome.detail, 300),
            payload=_clean(message.payload[:REJECT_PAYLOAD_BYTES].decode("utf-8", "replace"), REJECT_PAYLOAD_BYTES),
            received_at=message.received_at,
        )
        for message, outcome in zip(messages, outcomes, strict=True)
        if outcome.status == Status.REJECTED
    ]
    if not rejects:
        return
    RejectedReading.objects.bulk_create(rejects)
    cutoff = RejectedReading.objects.order_by("-pk").values_list("pk", flat=True)[REJECTS_KEPT - 1 : REJECTS_KEPT]
    if cutoff:
        RejectedReading.objects.filter(pk__lt=cutoff[0]).delete()


def counter_key(outcome: Outcome) -> tuple[str, str]:
    """The (status, reason) an outcome is counted under: accepted readings
    under '' or 'late', rejections under their reason."""
    if outcome.status == Status.ACCEPTED:
        return str(outcome.status), "late" if outcome.late else ""
    return str(outcome.status), str(outcome.reason or "")


def _counters_add(outcomes: list[Outcome]) -> None:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for outcome in outcomes:
        counts[counter_key(outcome)] += 1
    now = clock.now()
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO meters_ingestcounter (status, reason, count, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (status, reason) DO UPDATE SET count = meters_ingestcounter.count + excluded.count, "
            "updated_at = excluded.updated_at",
            [(status, reason, count, now) for (status, reason), count in sorted(counts.items())],
        )
