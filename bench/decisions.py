"""Benchmark: settle one interval of 100,000 meters, then decide and publish
every meter's connect/disconnect decision to a real Mosquitto.

    python -m bench.decisions [--meters 100000] [--history 23] [--scenarios all-cut,typical]
                              [--db NAME] [--results bench/RESULTS-decisions.md]

What is timed is what ``settle_grid_due`` and ``decide_after_settlement`` do
after an interval: ``settlement_close`` on PostgreSQL, then ``meters_decide``
for every meter the run touched: one read of every meter (no locks), the
recent-average query over the last 24 intervals of readings (only for the
meters whose decision can depend on it), locking the meters that need a message, the pure rules, signing each
decision with its meter's own secret, storing the decisions (COPY) and, after
each chunk commits, publishing them retained with QoS 1 to Mosquitto (many in
flight, on a worker thread while the next chunk is decided and stored) and
marking them published.

Scenarios (10 % of the meters are producers, never cut):

* ``all-cut`` — the worst case: every consumer starts at zero, so every one of
  them is cut after the settlement: one message per consumer;
* ``typical`` — consumers prepaid for 2 days on average: 3 % run dry, 7 % get
  a low-balance warning, the rest need no message.

Beside the figure it prints the raw limit measured in the same run: QoS 1
messages per second that the same publisher gets through the same broker with
no database work. After each scenario it checks the books, that every
decision is stored and published, and that the broker holds them: a fresh
subscriber receives every retained decision and each signature verifies with
its meter's secret. Wrong results exit non-zero.

It runs in its own database (dropped and created each run) and its own
Mosquitto on a free port.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    Progress,
    bench_database_create,
    copy_rows,
    fmt_rate,
    fmt_s,
    load_average,
    machine_description,
    step,
    table_markdown,
    table_print,
)

DEFAULT_DB = "commonwatt_bench_decisions"
HOUR = dt.timedelta(hours=1)
SCENARIOS = ("all-cut", "typical")
PRODUCER_EVERY = 10  # 10 % of the meters export
START = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)  # the hour settled
NOW = START + HOUR + dt.timedelta(minutes=10)  # the beat, ten minutes after the hour


def fleet_energy(size: int) -> list[tuple[int, int]]:
    """``(import_wh, export_wh)`` per meter and hour, seeded so every run is the
    same: every tenth meter a producer (0.5-30 kWh out), the rest consumers (50 Wh-3 kWh in)."""
    rng = random.Random(size)
    return [
        (0, rng.randint(500, 30_000)) if i % PRODUCER_EVERY == 0 else (rng.randint(50, 3_000), 0) for i in range(size)
    ]


def _reserve_ids(cursor, table: str, count: int) -> int:
    """Take ``count`` consecutive ids from the table's sequence (the benchmark
    database has no other writer); returns the first."""
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (sequence,) = cursor.fetchone()
    cursor.execute("SELECT setval(%s, nextval(%s) + %s - 1)", [sequence, sequence, count])
    (last,) = cursor.fetchone()
    return last - count + 1


@dataclass
class ScenarioResult:
    scenario: str
    meters: int
    settle_s: float = 0.0
    decide_s: float = 0.0
    cpu_s: float = 0.0  # CPU of the benchmark, its PostgreSQL backend and Mosquitto during both
    settle_cpu_s: float = 0.0  # the same during the settlement alone
    decide_cpu_by: dict[str, float] = field(default_factory=dict)  # decisions' CPU per process
    load: str = "?"  # the machine's load average when it started
    decisions: int = 0
    reasons: Counter = field(default_factory=Counter)
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.settle_s + self.decide_s


def _public_id(scenario: str, index: int) -> str:
    return f"{scenario[:3]}-{index:07d}"


def _balances(scenario: str, energy: list[tuple[int, int]]) -> list[int]:
    """Each meter's prepaid balance (µk) before the settlement."""
    if scenario == "all-cut":
        return [0] * len(energy)
    rng = random.Random(7)
    balances = []
    for import_wh, _ in energy:
        hourly_uk = import_wh * 1000  # 1 k per kWh
        roll = rng.random()
        hours = rng.uniform(0, 0.9) if roll < 0.03 else rng.uniform(2, 20) if roll < 0.10 else rng.uniform(30, 70)
        balances.append(int(hourly_uk * hours) if import_wh else 0)
    return balances


def fleet_load(scenario: str, energy: list[tuple[int, int]], history: int) -> tuple[object, dict[str, str]]:
    """A grid of meters with real sealed secrets, ``history`` settled hours of
    readings before ``START`` plus the hour to settle, and prepaid balances
    (one balanced ledger transaction). Returns the grid and each meter's secret."""
    from django.db import connection, transaction

    from meters.credentials import secret_seal
    from meters.models import Grid
    from meters.services import grid_create
    from utility.ledger.models import AccountKind
    from utility.ledger.services import system_account, transaction_post

    size = len(energy)
    grid = grid_create(f"bench-{scenario}", f"Decisions benchmark, {scenario}", now=START - history * HOUR)
    Grid.objects.filter(pk=grid.pk).update(settled_through=START)
    meter_secrets = {_public_id(scenario, i): secrets.token_urlsafe(24) for i in range(size)}
    progress = Progress(f"seal {size:,} meter secrets", size)
    sealed = {}
    for public_id, secret in meter_secrets.items():
        sealed[public_id] = secret_seal(secret, public_id)
        progress.advance()
    progress.finish()
    stamp = "2026-01-05 11:05:00+00"
    with transaction.atomic(), connection.cursor() as cursor:
        first_account = _reserve_ids(cursor, "ledger_account", size)
        first_meter = _reserve_ids(cursor, "meters_meter", size)
        copy_rows(cursor, "ledger_account", ("id", "code", "kind", "balance_uk", "created_at"),
                  (f"{first_account + i}\tmeter:{_public_id(scenario, i)}\tmeter\t0\t{stamp}\n" for i in range(size)),
                  size, f"load {size:,} accounts (COPY)")  # fmt: skip
        # The broker hash is not needed here (the benchmark's broker only
        # lets the backend in), and PBKDF2 for 100,000 meters would take minutes.
        copy_rows(
            cursor, "meters_meter",
            ("id", "grid_id", "public_id", "kind", "public", "label", "account_id", "secret_sealed", "secret_hash",
             "active", "never_disconnect", "decision_seq", "supply_state", "created_at"),
            (f"{first_meter + i}\t{grid.pk}\t{_public_id(scenario, i)}\t"
             f"{'producer' if i % PRODUCER_EVERY == 0 else 'consumer'}\tf\t\t{first_account + i}\t"
             f"{sealed[_public_id(scenario, i)]}\tbench\tt\tf\t0\tconnect\t{stamp}\n" for i in range(size)),
            size, f"load {size:,} meters (COPY)",
        )  # fmt: skip
        _readings_load(cursor, first_meter, energy, history)
    balances = _balances(scenario, energy)
    if any(balances):
        credit = system_account(AccountKind.OPERATOR_CREDIT)
        legs = [(first_account + i, b) for i, b in enumerate(balances) if b]
        with step(f"prepay {len(legs):,} meters (one transaction)"):
            transaction_post(f"bench:prepay:{scenario}", "bench_prepay", [*legs, (credit.pk, -sum(balances))])
    with step("ANALYZE"), connection.cursor() as cursor:
        cursor.execute("ANALYZE ledger_account, meters_meter, meters_reading, meters_meterdecision")
    grid.refresh_from_db()
    return grid, meter_secrets


def _readings_load(cursor, first_meter: int, energy: list[tuple[int, int]], history: int) -> None:
    """``history`` settled hours before ``START`` (the same energy each hour),
    then the hour to settle: the energy by COPY, the readings made by PostgreSQL."""
    cursor.execute("CREATE TEMP TABLE bench_energy (meter_id bigint, imp bigint, exp bigint) ON COMMIT DROP")
    copy_rows(cursor, "bench_energy", ("meter_id", "imp", "exp"),
              (f"{first_meter + i}\t{imp}\t{exp}\n" for i, (imp, exp) in enumerate(energy)),
              len(energy), f"load {len(energy):,} meters' energy (COPY)")  # fmt: skip
    with step(f"make {len(energy) * (history + 1):,} readings (SQL)"):
        cursor.execute(
            "INSERT INTO meters_reading (meter_id, interval_start, import_wh, export_wh, import_total_wh, "
            "export_total_wh, seq, received_at, late, settled_in) "
            "SELECT e.meter_id, %s - (%s - h) * interval '1 hour', e.imp, e.exp, e.imp * (h + 1), e.exp * (h + 1), "
            "h + 1, %s - (%s - h) * interval '1 hour', false, "
            "CASE WHEN h < %s THEN %s - (%s - h) * interval '1 hour' END "
            "FROM bench_energy e CROSS JOIN generate_series(0, %s) AS h ORDER BY e.meter_id, h",
            [START, history, START, history, history, START, history, history],
        )


# The steps of meters_decide, timed by wrapping the module-level functions it
# calls (the services carry no timing code).
STEPS = (
    ("meters.supply", "avg_costs_uk", "recent average (24 h of readings)"),
    ("meters.supply", "meters_snapshot", "read meters (one statement, no locks)"),
    ("meters.decisions_bulk", "_decide_locked", "lock, re-read, decide, sign"),
    ("meters.decisions_bulk", "_store", "store (COPY + UPDATE)"),
    # Chunk k-1 is published on a worker thread while chunk k is decided and stored:
    ("meters.decisions_bulk", "_lock_due", "lock, mark published (previous chunk)"),
    ("meters.decisions_bulk", "_acked", "wait for the broker"),
    ("meters.decisions_bulk", "_unclaim", "unmark what the broker refused"),
    ("meters.decisions_bulk", "_publish_many", "  broker (QoS 1, in flight, overlapped)"),
)


def _instrument(timings: dict[str, float]) -> Callable[[], None]:
    import importlib

    undo = []
    for module_name, name, label in STEPS:
        module = importlib.import_module(module_name)
        original = getattr(module, name)

        def timed(*args, _original=original, _label=label, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                timings[_label] = timings.get(_label, 0.0) + time.perf_counter() - started

        setattr(module, name, timed)
        undo.append((module, name, original))
    return lambda: [setattr(module, name, original) for module, name, original in undo]


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes (Linux /proc)."""
    import os

    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _helper_pids(broker_pid: int) -> list[int]:
    """This process, its PostgreSQL backend and the broker: the CPU the work takes,
    whatever else the machine runs meanwhile."""
    import os

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    return [os.getpid(), backend, broker_pid]


def run_scenario(
    scenario: str, size: int, history: int, broker_pid: int
) -> tuple[ScenarioResult, object, dict[str, str]]:
    from meters.supply import meters_decide
    from settlement.models import SettlementLine
    from settlement.services import settlement_close

    energy = fleet_energy(size)
    grid, meter_secrets = fleet_load(scenario, energy, history)
    result = ScenarioResult(scenario, size)
    pids = _helper_pids(broker_pid)
    result.load = load_average()
    cpu_before = cpu_seconds(pids)
    with step(f"settlement_close {size:,} meters"):
        started = time.perf_counter()
        closed = settlement_close(grid.pk, START, NOW)
        result.settle_s = time.perf_counter() - started
    result.settle_cpu_s = cpu_seconds(pids) - cpu_before
    per_process = [cpu_seconds([pid]) for pid in pids]
    if not closed.settled_now or closed.run.meter_count != size:
        raise SystemExit(f"settlement of {size:,} meters did not settle them all: {closed}")
    restore = _instrument(result.steps)
    try:
        with step(f"decide and publish {size:,} meters"):
            started = time.perf_counter()
            meter_ids = list(SettlementLine.objects.filter(run_id=closed.run.pk).values_list("meter_id", flat=True))
            result.decisions = meters_decide(meter_ids, NOW)
            result.decide_s = time.perf_counter() - started
    finally:
        restore()
    result.cpu_s = cpu_seconds(pids) - cpu_before
    used = [cpu_seconds([pid]) - before for pid, before in zip(pids, per_process, strict=True)]
    result.decide_cpu_by = dict(zip(("Python", "PostgreSQL", "Mosquitto"), used, strict=True))
    return result, grid, meter_secrets


def raw_publish_rates(count: int, payload_size: int, url: str) -> tuple[float, float]:
    """QoS 1 retained messages/s through the same broker with no database work:
    on a bulk connection (the path the decisions take) and, for comparison,
    through paho (``PahoPublisher.publish_many``, at most 20,000 messages)."""
    from meters.mqtt import mqtt_url_parse, publisher_get
    from meters.mqtt_bulk import mqtt_publish_bulk

    payload = b"x" * payload_size
    messages = [(f"bench/raw/{i}", payload) for i in range(count)]
    endpoint = mqtt_url_parse(url)
    mqtt_publish_bulk(messages[:1000], endpoint)  # warm up
    rates = []
    for label, publish, subset in (
        ("bulk connection", lambda m: mqtt_publish_bulk(m, endpoint, timeout_s=30), messages),
        ("paho publish_many", lambda m: publisher_get().publish_many(m, qos=1, retain=True), messages[:20_000]),
    ):
        with step(f"raw QoS 1, {label} ({len(subset):,})"):
            started = time.perf_counter()
            confirmed = publish(subset)
            rates.append(len(subset) / (time.perf_counter() - started))
        if not all(confirmed):
            raise SystemExit(f"the broker confirmed only {sum(confirmed)} of {len(subset)} raw messages ({label})")
    return rates[0], rates[1]


def broker_holds(slug: str, expected: dict[str, dict], meter_secrets: dict[str, str], url: str) -> None:
    """A fresh subscriber receives every decision retained on the broker, equal
    to the stored one, with a signature that verifies with the meter's secret."""
    import queue

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from meters.mqtt import mqtt_url_parse
    from meters.protocol import signature_valid

    endpoint = mqtt_url_parse(url)
    received: queue.Queue = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-check-{slug}", protocol=mqtt.MQTTv5)
    client.username_pw_set(endpoint.username, endpoint.password)
    client.on_message = lambda c, u, message: received.put((message.topic, message.payload, message.retain))
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    client.subscribe(f"grid/{slug}/meters/+/decision", qos=0)
    seen: dict[str, dict] = {}
    progress = Progress(f"read back {len(expected):,} retained", len(expected))
    try:
        while len(seen) < len(expected):
            try:
                topic, payload, retained = received.get(timeout=30)
            except queue.Empty:
                break
            meter = topic.split("/")[3]
            seen[meter] = json.loads(payload)
            if not retained:
                raise SystemExit(f"decision for {meter} was not retained")
            progress.advance()
    finally:
        progress.finish()
        client.disconnect()
        client.loop_stop()
    wrong = [m for m, payload in seen.items() if payload != expected.get(m)]
    unsigned = [m for m, payload in seen.items() if not signature_valid(meter_secrets[m], payload)]
    if len(seen) != len(expected) or wrong or unsigned:
        raise SystemExit(
            f"broker holds {len(seen):,} of {len(expected):,} decisions; {len(wrong)} differ from the stored ones, "
            f"{len(unsigned)} do not verify"
        )


def verify(result: ScenarioResult, grid, meter_secrets: dict[str, str], url: str) -> None:
    from django.db import connection

    from meters.models import MeterDecision
    from utility.ledger.selectors import ledger_problems

    with step(f"verify books and decisions ({result.scenario})"):
        with connection.cursor() as cursor:
            # Fresh statistics, or the planner nests loops over 200,000 accounts.
            cursor.execute("ANALYZE ledger_entry, ledger_account")
        problems = ledger_problems()
        rows = list(
            MeterDecision.objects.filter(meter__grid=grid).values_list(
                "meter__public_id", "reason", "published", "payload"
            )
        )
    result.reasons = Counter(reason for _, reason, _, _ in rows)
    wrong = [f"{p.what}: {p.detail}" for p in problems]
    if len(rows) != result.decisions or not all(published for _, _, published, _ in rows):
        wrong.append(f"{result.decisions} decisions said, {len(rows)} stored, {sum(r[2] for r in rows)} published")
    consumers = result.meters - (result.meters + PRODUCER_EVERY - 1) // PRODUCER_EVERY
    if result.scenario == "all-cut" and result.reasons != Counter({"funds_exhausted": consumers}):
        wrong.append(f"all-cut should cut all {consumers:,} consumers: {dict(result.reasons)}")
    if wrong:
        raise SystemExit("WRONG RESULTS after the benchmark:\n  " + "\n  ".join(wrong))
    broker_holds(grid.slug, {public_id: payload for public_id, _, _, payload in rows}, meter_secrets, url)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.decisions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=100_000, help="meters per scenario (default: %(default)s)")
    parser.add_argument("--history", type=int, default=23, help="settled hours of readings before (default: 23)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: all-cut, typical")
    parser.add_argument("--db", default=DEFAULT_DB, help="database to drop, create and use (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=None, help="also write the tables as markdown to this file")
    parser.add_argument("--target-s", type=float, default=10.0, help="settlement + decisions target (default: 10)")
    parser.add_argument(
        "--fillfactor", type=int, default=None, metavar="PCT",
        help="try a schema change: leave this much of each page of meters_meter and meters_meterdecision "
        "filled, so the hourly updates of decision_seq/supply_state/published stay HOT (default: as migrated)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or set(scenarios) - set(SCENARIOS) or args.meters < 10 or args.history < 0:
        raise SystemExit(f"scenarios must be among {SCENARIOS}, --meters at least 10, --history not negative")
    # SIGTERM (a timeout) still stops the benchmark's broker on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench_database_create(args.db)
    from django.conf import settings
    from django.db import connection

    if args.fillfactor is not None:
        with connection.cursor() as cursor:
            for table in ("meters_meter", "meters_meterdecision"):
                cursor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(args.fillfactor)})")

    from meters.mqtt import publishers_close
    from meters.tests.mosquitto import MosquittoProcess

    broker = MosquittoProcess()
    broker.start()
    settings.MQTT_PUBLISHER, settings.MQTT_URL, settings.MQTT_PUBLISH_TIMEOUT_S = "paho", broker.url, 30
    try:
        results = []
        consumers = args.meters - (args.meters + PRODUCER_EVERY - 1) // PRODUCER_EVERY
        raw_rate, paho_rate = raw_publish_rates(consumers, 190, broker.url)  # a decision is about 190 bytes
        for scenario in scenarios:
            result, grid, meter_secrets = run_scenario(scenario, args.meters, args.history, broker.process.pid)
            verify(result, grid, meter_secrets, broker.url)
            results.append(result)
            print(f"{scenario}: settle {fmt_s(result.settle_s)} s + decide and publish {fmt_s(result.decide_s)} s "
                  f"= {fmt_s(result.total_s)} s for {result.decisions:,} decisions", flush=True)  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            (pg_version,) = cursor.fetchone()
    finally:
        publishers_close()
        broker.cleanup()
    machine = f"{machine_description()}, PostgreSQL {pg_version}, Mosquitto 2"
    _report(results, (raw_rate, paho_rate), machine, args)
    return 0 if all(r.total_s < args.target_s for r in results) else 1


def _report(results: list[ScenarioResult], rates: tuple[float, float], machine: str, args) -> None:
    raw_rate, paho_rate = rates
    headers = ("scenario", "meters", "decisions sent", "settle s", "decide+publish s", "total s",
               "CPU s (settle + decide)", "load avg", "decisions/s", "raw QoS 1 msg/s",
               f"under {args.target_s:g} s")  # fmt: skip
    rows = [
        (r.scenario, f"{r.meters:,}", f"{r.decisions:,}", fmt_s(r.settle_s), fmt_s(r.decide_s), fmt_s(r.total_s),
         f"{fmt_s(r.cpu_s)} ({fmt_s(r.settle_cpu_s)} + {fmt_s(r.cpu_s - r.settle_cpu_s)})", r.load,
         fmt_rate(r.decisions / r.decide_s) if r.decisions else "-", fmt_rate(raw_rate),
         "yes" if r.total_s < args.target_s else "NO")
        for r in results
    ]  # fmt: skip
    print("\nSettlement of one hour, then decisions for every meter, published to Mosquitto")
    table_print(headers, rows)
    print(f"raw limit: {fmt_rate(raw_rate)} QoS 1 messages/s on a bulk connection to the same broker, no database "
          f"(paho: {fmt_rate(paho_rate)} messages/s)")  # fmt: skip
    labels = [label for _, _, label in STEPS]
    step_rows = [(label, *(fmt_s(r.steps.get(label, 0.0)) for r in results)) for label in labels]
    accounted = [sum(v for k, v in r.steps.items() if not k.startswith("  ")) for r in results]
    step_rows.append(
        (
            "other (lines query, rules in Python, commits)",
            *(fmt_s(r.decide_s - a) for r, a in zip(results, accounted, strict=True)),
        )
    )
    step_rows.append(("total decide+publish", *(fmt_s(r.decide_s) for r in results)))
    print("\nmeters_decide, seconds per step")
    table_print(("step", *(r.scenario for r in results)), step_rows)
    for r in results:
        cpu = ", ".join(f"{name} {fmt_s(seconds)}" for name, seconds in r.decide_cpu_by.items())
        print(f"{r.scenario}: reasons {dict(r.reasons)}; CPU s of decide+publish: {cpu}")
    print(f"machine: {machine}")
    if args.results is not None:
        text = (
            "# Decisions benchmark\n\n"
            f"`python -m bench.decisions --meters {args.meters} --history {args.history}"
            f"{'' if args.fillfactor is None else f' --fillfactor {args.fillfactor}'}` — "
            f"{dt.date.today().isoformat()}, {machine}.\n\n"
            "One hour of 100,000 meters (10 % producers) is settled (`settlement_close`), then `meters_decide` "
            "runs for every meter the run touched: the recent average over 24 hours of readings, the meters "
            "locked, the pure rules, each decision signed with its meter's secret and stored (COPY), and after "
            "each chunk of 5,000 commits, published retained with QoS 1 to a real Mosquitto (many in flight) "
            "and marked published. The run then reads every retained decision back from the broker and "
            "verifies each signature.\n\n"
            + table_markdown(headers, rows)
            + "\n*CPU s*: user + system seconds of the benchmark process, its PostgreSQL backend and Mosquitto "
            "over settlement and decisions: what the work costs whatever else the shared machine runs (the wall "
            "time on an idle machine is about this). *load avg*: the machine's 1-minute load when it began.\n"
            + f"\nRaw limit, same run: {fmt_rate(raw_rate)} retained QoS 1 messages/s on a bulk connection "
            f"(`meters.mqtt_bulk`, the path the decisions take) to the same broker, no database work; "
            f"paho-mqtt's `publish_many` reaches {fmt_rate(paho_rate)} messages/s on the same broker.\n\n"
            "Seconds per step of `meters_decide`:\n\n"
            + table_markdown(("step", *(r.scenario for r in results)), step_rows)
            + "\n"
            + "".join(
                f"- {r.scenario}: {', '.join(f'{k} {v:,}' for k, v in sorted(r.reasons.items()))}\n" for r in results
            )
        )
        args.results.write_text(text)
        print(f"written to {args.results}")


if __name__ == "__main__":
    sys.exit(main())
