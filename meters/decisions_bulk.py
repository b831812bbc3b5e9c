"""Decide and publish for many meters at once: the bulk twin of ``decision_publish``.

After a settlement every meter of a grid may need a decision; one transaction
and one broker round trip per meter (``meters.decisions.decision_publish``)
would take minutes for 100,000 meters. This path keeps the same guarantees in
a few statements per chunk of meters:

* each decision is computed by the caller's ``decide`` from the locked meter:
  its supply state, its account's balance, its latest decision's reason (kept
  on the meter, ``decision_reason``) and since when it is past its credit
  limit. All the meters are first read without locks in one statement
  (``meters_snapshot``); only the meters that need saying something (a few
  per cent in a typical hour) or whose ``overdrawn_since`` mark changes are
  then locked in chunks (``SELECT ... FOR UPDATE``, in id order like every
  other meter lock), read again and decided again, so a funding committed a
  moment earlier is never overruled by a stale view (a meter read exactly the
  same under lock keeps its first answer: ``decide`` is pure). (A meter that
  needs nothing in the first read but something a moment later is decided by
  the funding or settlement that changed it: those always decide after they
  commit.)
* a decision takes the meter's next ``decision_seq``; its payload is
  ``{"state", "reason", "balance_uk", "issued_at", "seq", "sig"}`` signed with
  the meter's own secret, byte for byte what ``decision_publish`` sends
  (checked against ``protocol.sign`` for the first decision of every chunk);
  it is stored as a ``MeterDecision`` (who, why, when; COPY) together with the
  meter's new ``decision_seq``/``supply_state``/``decision_reason`` (one
  ``UPDATE ... FROM unnest``) in the chunk's transaction;
* after commit the chunk is published retained with QoS 1, many messages in
  flight, while holding the meters' row locks, so a newer decision for the same
  meter cannot reach the broker first; only a meter's latest unpublished
  decision goes out and each one the broker acknowledged is marked
  ``published``. What the broker did not take stays unpublished for
  ``decisions_send_pending_bulk`` (the beat runs it every minute). The
  meters are locked twice, to store and to publish: a decision may reach the
  broker only after its transaction committed (else a failed commit would
  leave the meter holding a seq that is then reused), and row locks end with
  the commit. Outside a caller's transaction (``_publish_pipelined``) chunk
  k's transaction takes chunk k-1's locks first, publishes it on a worker
  thread while chunk k is decided and stored, and marks it before committing.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F

from utility.lib.timeutil import ensure_utc, format_utc

from .credentials import secret_unsealer
from .decisions import REASON_RE, decision_topic
from .models import DecisionState, Meter, MeterDecision
from .mqtt import MqttPublishError, PahoPublisher, payload_encode, publisher_get
from .mqtt_bulk import mqtt_publish_bulk
from .prepaid import overdrawn_since_next
from .protocol import sign

logger = logging.getLogger(__name__)

# Meters per transaction: bounds how long their row locks are held and keeps
# every ``IN (...)`` list under SQLite's variable limit.
CHUNK = 5_000
# From this many messages a bulk connection (``mqtt_bulk``) beats paho.
BULK_CONNECTION_MIN = 50


class MeterSnapshot(NamedTuple):
    """A meter as read for a decision (money in µk). A tuple: after a
    settlement 100,000 of them are made straight from database rows."""

    meter_id: int
    public_id: str
    grid_id: int
    grid_slug: str
    credit_limit_uk: int
    kind: str
    never_disconnect: bool
    supply_state: str
    balance_uk: int
    last_reason: str | None  # reason of its latest decision; None: never decided
    credit_grace_s: int = 0  # the grid's credit grace
    overdrawn_since: datetime | None = None  # first seen past its credit limit; None: it is not


# What to tell a meter: ``(state, reason)``, or None for nothing. It may be
# asked twice about one meter (before and after the lock): it must be pure.
Decide = Callable[[MeterSnapshot], tuple[str, str] | None]

_FIELDS = len(MeterSnapshot._fields)


# Tuples, not frozen dataclasses: 90,000 of each per run, and a tuple is made
# several times faster.
class _Outgoing(NamedTuple):
    meter_id: int
    seq: int
    topic: str
    payload: bytes


class _Signed(NamedTuple):
    snapshot: MeterSnapshot
    seq: int
    state: str
    reason: str
    wire: str  # the JSON as published and stored


class _Change(NamedTuple):
    """What one locked meter gets: a decision and/or a new ``overdrawn_since``."""

    meter_id: int
    signed: _Signed | None
    overdrawn_since: datetime | None


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def _overdrawn_next(snapshot: MeterSnapshot, now: datetime) -> datetime | None:
    return overdrawn_since_next(snapshot.balance_uk, snapshot.credit_limit_uk, snapshot.overdrawn_since, now)


def decisions_publish_bulk(
    meter_ids: Sequence[int],
    decide: Decide,
    *,
    issued_by: str = "system",
    now: datetime,
    snapshots: Sequence[MeterSnapshot] | None = None,
) -> int:
    """Decide for each active meter in ``meter_ids`` and store and publish what ``decide`` says.

    ``decide`` gets each meter's ``MeterSnapshot`` and returns ``(state,
    reason)`` or ``None``; raising there writes nothing for that chunk. A bad
    state or reason, or a ``disconnect`` for a ``never_disconnect`` meter,
    raises ``ValueError`` (as ``decision_publish`` does). ``issued_at`` is
    ``now`` to the second. ``snapshots``: the meters as the caller already
    read them without locks (``meters_snapshot``), to save reading them again.
    Each meter's ``overdrawn_since`` (``meters.prepaid.overdrawn_since_next``)
    is kept up to date on the way, with or without a decision. Returns how
    many decisions were stored; each chunk's are published after it commits.
    """
    if not isinstance(issued_by, str) or not 0 < len(issued_by) <= 150:
        raise ValueError("issued_by must be 'system' or an operator's username (max 150)")
    issued_at = ensure_utc(now).replace(microsecond=0)
    stamp = format_utc(issued_at)
    if snapshots is None:
        snapshots = meters_snapshot(meter_ids)
    wanted, decide = _first_look(snapshots, decide, issued_at)
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _publish_pipelined(wanted, decide, issued_by, stamp, issued_at)
    stored = 0
    for chunk in _chunks(wanted):
        with transaction.atomic():
            signed = _decide_store(chunk, decide, issued_by, stamp, issued_at)
            if signed:
                # robust: a broker failure must not undo or hide the stored decisions.
                transaction.on_commit(partial(_send_logged, _outgoing(signed)), robust=True)
        stored += len(signed)
    return stored


def _first_look(snapshots: Sequence[MeterSnapshot], decide: Decide, issued_at: datetime) -> tuple[list[int], Decide]:
    """The meters to lock (something to say, or a new ``overdrawn_since``),
    and ``decide`` for the locked re-read: a meter read the same under lock
    gets the answer of the first look (``decide`` is pure), any change is
    decided again."""
    wanted: list[int] = []
    first: dict[int, tuple[MeterSnapshot, tuple[str, str] | None]] = {}
    for snapshot in snapshots:
        said = decide(snapshot)
        if said is not None or _overdrawn_next(snapshot, issued_at) != snapshot.overdrawn_since:
            wanted.append(snapshot.meter_id)
            first[snapshot.meter_id] = (snapshot, said)

    def again(snapshot: MeterSnapshot) -> tuple[str, str] | None:
        seen = first.get(snapshot.meter_id)
        return seen[1] if seen is not None and seen[0] == snapshot else decide(snapshot)

    return wanted, again


def _decide_store(chunk: list[int], decide: Decide, issued_by: str, stamp: str, issued_at: datetime) -> list[_Signed]:
    changes = _decide_locked(chunk, decide, stamp, issued_at)
    signed = [c.signed for c in changes if c.signed is not None]
    if changes:
        _store(changes, signed, issued_by, stamp)
    return signed


def _outgoing(signed: list[_Signed]) -> list[_Outgoing]:
    return [_Outgoing(s.snapshot.meter_id, s.seq, _topic(s), s.wire.encode()) for s in signed]


def _publish_pipelined(wanted: list[int], decide: Decide, issued_by: str, stamp: str, issued_at: datetime) -> int:
    """``decisions_publish_bulk`` outside any transaction, on PostgreSQL: chunk
    k-1 goes to the broker (on a worker thread: sockets only, no database)
    while chunk k is decided and stored. Chunk k's transaction first locks
    chunk k-1's meters (lower ids: id order holds) and keeps the decisions that
    are still their meter's latest unpublished; it marks the ones the broker
    acknowledged, then commits. So each decision is published after its own
    transaction committed, while its meter is locked, and only acknowledged
    ones are marked, as ``decisions_send_bulk`` does; the last chunk goes out
    alone. A failure to publish is logged: the decisions stay stored and
    unpublished for ``decisions_send_pending_bulk``."""
    stored = 0
    previous: list[_Outgoing] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decisions-publish") as pool:
        for chunk in _chunks(wanted):
            with transaction.atomic():
                due, sending = _send_begin(previous, pool)
                try:
                    signed = _decide_store(chunk, decide, issued_by, stamp, issued_at)
                finally:
                    # Wait even when deciding failed: the locks must outlast the publish.
                    acked = _acked(due, sending)
                _unclaim(due, acked)
            previous = _outgoing(signed)
            stored += len(signed)
        with transaction.atomic():
            due, sending = _send_begin(previous, pool)
            _unclaim(due, _acked(due, sending))
    return stored


def _send_begin(
    outgoing: list[_Outgoing], pool: ThreadPoolExecutor
) -> tuple[list[_Outgoing], Future[list[bool]] | None]:
    """Lock the meters of ``outgoing`` and start publishing the decisions
    still due on ``pool``; the caller's transaction holds the locks until
    ``_acked`` has waited for the broker."""
    due = _lock_due(outgoing)
    return due, (pool.submit(_publish_many, due) if due else None)


def _acked(due: list[_Outgoing], sending: Future[list[bool]] | None) -> list[_Outgoing]:
    if sending is None:
        return []
    try:
        confirmed = sending.result()
    except Exception:  # as robust on_commit: stored, unpublished, retried by decisions_send_pending_bulk
        logger.exception("%d decisions not published; decisions_send_pending_bulk will retry", len(due))
        return []
    if not any(confirmed):
        logger.error("the broker took none of %d decisions; decisions_send_pending_bulk will retry", len(due))
    return [o for o, ok in zip(due, confirmed, strict=True) if ok]


# Without locks, for a whole grid in one statement; the same columns again
# under lock, then ``decision_seq`` and the sealed secret.
_SNAPSHOT_SQL = (
    "SELECT m.id, m.public_id, m.grid_id, g.slug, g.credit_limit_uk, m.kind, m.never_disconnect, m.supply_state, "
    "a.balance_uk, NULLIF(m.decision_reason, ''), g.credit_grace_s, m.overdrawn_since "
    "FROM unnest(%s::bigint[]) AS u(id) JOIN meters_meter m ON m.id = u.id "
    "JOIN meters_grid g ON g.id = m.grid_id JOIN ledger_account a ON a.id = m.account_id WHERE m.active"
)
_LOCKED_SQL = (
    "SELECT m.id, m.public_id, m.grid_id, g.slug, g.credit_limit_uk, m.kind, m.never_disconnect, m.supply_state, "
    "a.balance_uk, NULLIF(m.decision_reason, ''), g.credit_grace_s, m.overdrawn_since, m.decision_seq, "
    "m.secret_sealed FROM meters_meter m "
    "JOIN meters_grid g ON g.id = m.grid_id JOIN ledger_account a ON a.id = m.account_id "
    "WHERE m.id = ANY(%s::bigint[]) AND m.active ORDER BY m.id FOR UPDATE OF m"
)
_ORM_COLUMNS = (
    "pk", "public_id", "grid_id", "grid__slug", "grid__credit_limit_uk", "kind", "never_disconnect",
    "supply_state", "account__balance_uk", "decision_reason", "grid__credit_grace_s", "overdrawn_since",
)  # fmt: skip


def meters_snapshot(meter_ids: Sequence[int]) -> list[MeterSnapshot]:
    """Each active meter of ``meter_ids`` as it is now, read without locks
    in one statement (with its grid's credit rules and its account's balance)."""
    ids = sorted(set(meter_ids))
    if not ids:
        return []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_SNAPSHOT_SQL, [_ints(ids)])
            return list(map(MeterSnapshot._make, cursor.fetchall()))
    rows: list[tuple] = []
    for start in range(0, len(ids), 500):  # SQLite's variable limit
        rows += Meter.objects.filter(pk__in=ids[start : start + 500], active=True).values_list(*_ORM_COLUMNS)
    return [_orm_snapshot(row) for row in rows]


def _orm_snapshot(row: tuple) -> MeterSnapshot:
    snapshot = MeterSnapshot._make(row[:_FIELDS])
    return snapshot._replace(last_reason=snapshot.last_reason or None)


def _locked_rows(ids: list[int]) -> list[tuple]:
    """Lock the meters (id order) and read each one's snapshot columns, then
    its ``decision_seq`` and sealed secret."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LOCKED_SQL, [_ints(ids)])
            return cursor.fetchall()
    meters = Meter.objects.select_for_update(of=("self",)).filter(pk__in=ids, active=True).order_by("pk")
    rows = meters.values_list(*_ORM_COLUMNS, "decision_seq", "secret_sealed")
    return [(*_orm_snapshot(row), *row[_FIELDS:]) for row in rows]


def _decide_locked(ids: list[int], decide: Decide, stamp: str, issued_at: datetime) -> list[_Change]:
    changes = []
    checked = False
    unseal = secret_unsealer()
    for row in _locked_rows(ids):
        snapshot, decision_seq, sealed = MeterSnapshot._make(row[:_FIELDS]), row[-2], row[-1]
        overdrawn = _overdrawn_next(snapshot, issued_at)
        said = decide(snapshot)
        if said is None:
            if overdrawn != snapshot.overdrawn_since:
                changes.append(_Change(snapshot.meter_id, None, overdrawn))
            continue
        state, reason = said
        _check(snapshot, state, reason)
        secret = unseal(sealed, snapshot.public_id)
        signed = _sign(secret, snapshot, decision_seq + 1, state, reason, stamp, check=not checked)
        checked = True
        changes.append(_Change(snapshot.meter_id, signed, overdrawn))
    return changes


_STATES = frozenset(DecisionState.values)
_DISCONNECT = DecisionState.DISCONNECT.value


def _check(snapshot: MeterSnapshot, state: str, reason: str) -> None:
    if state not in _STATES:
        raise ValueError(f"state must be one of {', '.join(DecisionState.values)}, got {state!r}")
    if not isinstance(reason, str) or not REASON_RE.match(reason):
        raise ValueError(f"reason must be a code of a-z, 0-9 and _ (max 60), got {reason!r}")
    if state == _DISCONNECT and snapshot.never_disconnect:
        raise ValueError(f"meter {snapshot.public_id} is marked never_disconnect")
    if type(snapshot.balance_uk) is not int:
        raise ValueError(f"balance of meter {snapshot.public_id} is not an integer: {snapshot.balance_uk!r}")


def _sign(
    secret: str, snapshot: MeterSnapshot, seq: int, state: str, reason: str, stamp: str, *, check: bool
) -> _Signed:
    """The signed payload, written out directly: every value is an integer or
    a string that JSON leaves as it is (a checked state and reason code, a UTC
    stamp), so this is exactly ``json.dumps(sort_keys=True, separators=(",",
    ":"))`` at a tenth of the cost. ``check`` compares with ``protocol.sign``."""
    head = f'{{"balance_uk":{snapshot.balance_uk},"issued_at":"{stamp}","reason":"{reason}","seq":{seq}'
    canonical = f'{head},"state":"{state}"}}'
    sig = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    wire = f'{head},"sig":"{sig}","state":"{state}"}}'
    if check:
        body = {"state": state, "reason": reason, "balance_uk": snapshot.balance_uk, "issued_at": stamp, "seq": seq}
        body["sig"] = sign(secret, body)
        if body["sig"] != sig or payload_encode(body).decode() != wire:
            raise RuntimeError(f"bulk decision payload differs from protocol.sign's: {wire} vs {body}")
    return _Signed(snapshot, seq, state, reason, wire)


def _topic(signed: _Signed) -> str:
    return decision_topic(signed.snapshot.grid_slug, signed.snapshot.public_id)


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _store(changes: list[_Change], signed: list[_Signed], issued_by: str, stamp: str) -> None:
    """Insert the decisions and move each changed meter's ``decision_seq``,
    ``supply_state``, ``decision_reason`` and ``overdrawn_since``."""
    if connection.vendor != "postgresql":
        issued_at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        MeterDecision.objects.bulk_create(
            [
                MeterDecision(
                    meter_id=s.snapshot.meter_id, seq=s.seq, state=s.state, reason=s.reason,
                    balance_uk=s.snapshot.balance_uk, issued_at=issued_at, issued_by=issued_by,
                    payload=_payload(s.wire),
                )
                for s in signed
            ],
            batch_size=500,
        )  # fmt: skip
        for c in changes:
            fields: dict = {"overdrawn_since": c.overdrawn_since}
            if c.signed is not None:
                fields.update(decision_seq=c.signed.seq, supply_state=c.signed.state, decision_reason=c.signed.reason)
            Meter.objects.filter(pk=c.meter_id).update(**fields)
        return
    with connection.cursor() as cursor:
        if signed:
            # COPY: about ten times faster than bulk_create at 100,000 rows. The
            # wire needs no escaping: integers, checked codes, a UTC stamp, hex.
            by = _copy_text(issued_by)
            buffer = io.StringIO(
                "".join(
                    f"{s.snapshot.meter_id}\t{s.seq}\t{s.state}\t{s.reason}\t{s.snapshot.balance_uk}\t{stamp}\t"
                    f"{by}\t{s.wire}\tf\n"
                    for s in signed
                )
            )
            cursor.copy_expert(
                "COPY meters_meterdecision (meter_id, seq, state, reason, balance_uk, issued_at, issued_by, "
                "payload, published) FROM STDIN",
                buffer,
            )
        # One UPDATE; a meter whose grace mark alone changed keeps its seq/state/reason (NULLs here).
        cursor.execute(
            "UPDATE meters_meter m SET decision_seq = COALESCE(d.seq, m.decision_seq), "
            "supply_state = COALESCE(d.state, m.supply_state), decision_reason = COALESCE(d.reason, "
            "m.decision_reason), overdrawn_since = d.overdrawn_since FROM unnest(%s::bigint[], %s::bigint[], "
            "%s::varchar[], %s::varchar[], %s::timestamptz[]) AS d(id, seq, state, reason, overdrawn_since) "
            "WHERE m.id = d.id",
            [
                _ints(c.meter_id for c in changes),
                _ints(None if c.signed is None else c.signed.seq for c in changes),
                _codes(None if c.signed is None else c.signed.state for c in changes),
                _codes(None if c.signed is None else c.signed.reason for c in changes),
                _instants(c.overdrawn_since for c in changes),
            ],
        )


# Array parameters as PostgreSQL array literals, one string each: psycopg2
# adapts a Python list item by item (a datetime costs microseconds), which was
# over a second of Python per 90,000 decisions; the server parses the literal.
def _ints(values: Iterable[int | None]) -> str:
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _codes(values: Iterable[str | None]) -> str:
    # Checked codes (a-z, 0-9, _): quoted, so a code spelled "null" stays a string.
    return "{" + ",".join("NULL" if v is None else f'"{v}"' for v in values) + "}"


def _instants(values: Iterable[datetime | None]) -> str:
    text: dict[datetime, str] = {}  # a chunk holds a few distinct instants
    items = []
    for v in values:
        if v is None:
            items.append("NULL")
        else:
            if v not in text:
                text[v] = f'"{ensure_utc(v).isoformat()}"'
            items.append(text[v])
    return "{" + ",".join(items) + "}"


def _payload(wire: str) -> dict:
    return json.loads(wire)


def _send_logged(outgoing: list[_Outgoing]) -> None:
    try:
        decisions_send_bulk(outgoing)
    except MqttPublishError:
        logger.exception("%d decisions not published; decisions_send_pending_bulk will retry", len(outgoing))


def decisions_send_bulk(outgoing: Sequence[_Outgoing]) -> int:
    """Publish stored decisions retained with QoS 1, many in flight, and mark
    the acknowledged ones ``published``; returns how many the broker took.

    Holds the meters' row locks while publishing (as ``decision_send`` does);
    a decision that is no longer its meter's latest, or already published, is
    skipped. Raises ``MqttPublishError`` when the broker took none.
    """
    if not outgoing:
        return 0
    with transaction.atomic():
        due = _lock_due(outgoing)
        confirmed = _publish_many(due)
        acked = [o for o, ok in zip(due, confirmed, strict=True) if ok]
        _unclaim(due, acked)
    if due and not acked:
        raise MqttPublishError(f"the broker took none of {len(due)} decisions")
    return len(acked)


def _lock_due(outgoing: Sequence[_Outgoing]) -> list[_Outgoing]:
    """Lock the meters of ``outgoing`` (id order) and claim the decisions
    still their meter's latest unpublished: they are marked ``published``
    in the caller's transaction, which must give back (``_unclaim``) those
    the broker did not acknowledge before it commits. Nobody sees the claim
    before then, and a crash rolls it back: only acknowledged decisions are
    ever committed as published. Claiming in the lock's round trip saves
    reading the decisions back and updating them afterwards."""
    if not outgoing:
        return []
    meter_ids = sorted({o.meter_id for o in outgoing})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The lock first (all of them, in id order), then the claim; the result is the claim's.
            # The claim finds its decisions by (meter, seq) before it looks at
            # ``published`` (a materialized CTE): the statistics say nearly every
            # decision is published, and a plain ``AND NOT d.published`` made the
            # planner scan the unpublished ones once per outgoing decision
            # (2.5 s for a chunk of 4,000 in bench/decisions.py).
            cursor.execute(
                "SELECT count(*) FROM (SELECT 1 FROM meters_meter WHERE id = ANY(%s::bigint[]) ORDER BY id "
                "FOR UPDATE) AS locked; "
                "WITH latest AS MATERIALIZED (SELECT d.id, d.published FROM unnest(%s::bigint[], %s::bigint[]) "
                "AS u(meter_id, seq) JOIN meters_meter m ON m.id = u.meter_id AND m.decision_seq = u.seq "
                "JOIN meters_meterdecision d ON d.meter_id = u.meter_id AND d.seq = u.seq) "
                "UPDATE meters_meterdecision d SET published = true FROM latest "
                "WHERE d.id = latest.id AND NOT latest.published RETURNING d.meter_id, d.seq",
                [_ints(meter_ids), _ints(o.meter_id for o in outgoing), _ints(o.seq for o in outgoing)],
            )
            claimed = set(cursor.fetchall())
    else:
        list(Meter.objects.select_for_update().filter(pk__in=meter_ids).order_by("pk").values_list("pk"))
        claimed = set(
            MeterDecision.objects.filter(meter_id__in=meter_ids, published=False, seq=F("meter__decision_seq"))
            .values_list("meter_id", "seq")
        )  # fmt: skip
        for meter_id, seq in claimed:
            MeterDecision.objects.filter(meter_id=meter_id, seq=seq).update(published=True)
    return [o for o in outgoing if (o.meter_id, o.seq) in claimed]


def _unclaim(due: list[_Outgoing], acked: list[_Outgoing]) -> None:
    """Give back the claim (``_lock_due``) on what the broker did not acknowledge."""
    if len(acked) == len(due):
        return
    taken = {(o.meter_id, o.seq) for o in acked}
    refused = [o for o in due if (o.meter_id, o.seq) not in taken]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE meters_meterdecision d SET published = false FROM unnest(%s::bigint[], %s::bigint[]) "
                "AS u(meter_id, seq) WHERE d.meter_id = u.meter_id AND d.seq = u.seq",
                [_ints(o.meter_id for o in refused), _ints(o.seq for o in refused)],
            )
        return
    for outgoing in refused:
        MeterDecision.objects.filter(meter_id=outgoing.meter_id, seq=outgoing.seq).update(published=False)


def _publish_many(messages: Sequence[_Outgoing]) -> list[bool]:
    """Publish retained with QoS 1; True where the broker confirmed (or, for
    the in-memory publisher, recorded) the message."""
    if not messages:
        return []
    pairs = [(m.topic, m.payload) for m in messages]
    publisher = publisher_get()
    if isinstance(publisher, PahoPublisher) and len(pairs) >= BULK_CONNECTION_MIN:
        return mqtt_publish_bulk(pairs, publisher.endpoint, retain=True, timeout_s=publisher.timeout_s)
    many = getattr(publisher, "publish_many", None)
    if many is not None:
        return many(pairs, qos=1, retain=True)
    confirmed = []
    for topic, payload in pairs:
        try:
            publisher.publish(topic, payload, 1, True)
            confirmed.append(True)
        except MqttPublishError:
            logger.warning("decision on %s not published", topic)
            confirmed.append(False)
    return confirmed


def decisions_send_pending_bulk(limit: int = 100_000) -> int:
    """Publish every meter's latest decision still unpublished (a broker
    outage left it so), up to ``limit``, in chunks; returns how many the broker
    took. Older unpublished decisions are superseded and stay unpublished.
    The beat runs it every minute: the partial index ``decision_unpublished``
    keeps that to the few unpublished rows, however long the table grows."""
    pending = (
        MeterDecision.objects.filter(published=False, seq=F("meter__decision_seq"))
        .order_by("meter_id")
        .values_list("meter_id", "seq", "meter__grid__slug", "meter__public_id", "payload")[:limit]
    )
    outgoing = [
        _Outgoing(meter_id, seq, decision_topic(slug, public_id), payload_encode(payload))
        for meter_id, seq, slug, public_id, payload in pending
    ]
    return sum(decisions_send_bulk(outgoing[i : i + CHUNK]) for i in range(0, len(outgoing), CHUNK))
