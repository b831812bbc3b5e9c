"""Benchmark: meter readings over MQTT into PostgreSQL, end to end.

    python -m bench.ingest [--readings 100000] [--meters 200] [--publishers 4]
                           [--backlog 200000] [--batch-size 1000] [--batch-ms 50]
                           [--raw-messages 100000] [--no-meter-acks] [--meter-client lean|paho]
                           [--shards 1] [--results bench/RESULTS-ingest.md] [--append]

What it measures, in one run, on its own Mosquitto (``meters/tests/mosquitto.py``:
generated password file and ACL, persistence on) and its own database
(``commonwatt_bench_ingest``, or ``$BENCH_INGEST_DB``; dropped, created and migrated):

1. Raw limits: plain paho → Mosquitto → paho at QoS 1 (publisher processes,
   one subscriber, no processing), and PostgreSQL COPY into a table shaped
   like ``meters_reading`` (same columns and indexes).
2. Live: ``manage.py ingest_mqtt`` running; ``--meters`` meters, spread over
   ``--publishers`` processes, each meter with its own broker login, publish
   ``--readings`` signed readings (QoS 1; every meter also subscribes to its ack
   topic unless ``--no-meter-acks``). Accepted readings per second from the
   first publish to the commit of the last reading. The simulated meters are
   ``bench/lean_meters.py`` (MQTT 5 spoken directly: they share the two cores
   with the backend, and paho would cost them five times the CPU), or paho
   with ``--meter-client paho``.
3. Backlog: the ingest stopped (its persistent session stays), ``--backlog``
   readings are published and queued by the broker; then the ingest starts and
   the drain is timed from starting the process to the last commit.

Payloads are signed before the clock starts (signing is the meters' work, not
the backend's). At the end it checks that every reading was stored exactly
once and none was rejected, and it writes the figures to ``--results``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    Progress,
    bench_database_create,
    fmt_rate,
    fmt_s,
    machine_description,
    step,
    table_markdown,
    table_print,
)

# Its own database; BENCH_INGEST_DB names another (two engineers benchmarking at once).
BENCH_DB = os.environ.get("BENCH_INGEST_DB", "commonwatt_bench_ingest")
ROOT = Path(__file__).resolve().parent.parent
INTERVAL_S = 3600
TARGET_RATE = 10_000
ACK_WAIT_S = 30.0  # after the last PUBACK, how long meters wait for their acks
INGEST_CPU = "ingest_mqtt"
BACKLOG_TARGET = (1_000_000, 120.0)  # readings, seconds


# -- publisher processes (spawned: no Django in them) ----------------------------


@dataclass(frozen=True)
class PublisherJob:
    host: str
    port: int
    meters: list[tuple[str, str, str]]  # (grid, public_id, secret)
    first_start: datetime
    first_index: int
    per_meter: int
    subscribe_acks: bool
    username: str = ""  # raw mode: publish as this user to bench/raw
    password: str = ""
    raw_messages: int = 0
    raw_topic: str = "bench/raw"
    meter_client: str = "lean"  # bench.lean_meters, or "paho"


def _payloads(job: PublisherJob) -> list[tuple[int, str, bytes]]:
    from meters.tests.readings import MeterStream

    streams = [MeterStream(grid, meter, secret, job.first_start, INTERVAL_S) for grid, meter, secret in job.meters]
    # Interval by interval, meter by meter: how a fleet reports.
    return [
        (number, stream.topic, stream.payload(index))
        for index in range(job.first_index, job.first_index + job.per_meter)
        for number, stream in enumerate(streams)
    ]


def _client(job: PublisherJob, username: str, password: str, client_id: str):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(100)
    client.connect(job.host, job.port, keepalive=60)
    client.loop_start()
    return client


def publisher_main(job: PublisherJob, ready, go, results) -> None:
    """Connect the job's meters, sign their payloads, wait for ``go``, publish
    everything at QoS 1 and report ``(first publish, last PUBACK)`` wall times."""
    from meters.protocol import topic_ack

    acks: list[int] = []  # the paho meters' acks received
    if job.raw_messages:
        body = b'{"v":1,"meter":"raw","seq":1,"period_start":"2026-01-01T00:00:00Z","pad":"' + b"x" * 250 + b'"}'
        clients = [_client(job, job.username, job.password, f"raw-pub-{os.getpid()}")]
        messages = [(0, job.raw_topic, body)] * job.raw_messages
    elif job.meter_client == "lean":
        return _lean_publisher_main(job, ready, go, results)
    else:
        messages = _payloads(job)
        clients = [_client(job, meter, secret, meter) for _, meter, secret in job.meters]
        if job.subscribe_acks:
            for (grid, meter, _), client in zip(job.meters, clients, strict=True):
                client.on_message = lambda *_: acks.append(1)
                client.subscribe(topic_ack(grid, meter), qos=1)
    while not all(client.is_connected() for client in clients):
        time.sleep(0.01)
    ready.put(os.getpid())
    go.wait()
    started, cpu = time.time(), time.process_time()
    infos = [clients[number].publish(topic, payload, qos=1) for number, topic, payload in messages]
    for info in infos:
        info.wait_for_publish(300)
    finished = time.time()
    deadline = time.monotonic() + ACK_WAIT_S  # let the last acks to meters arrive before hanging up
    while job.subscribe_acks and len(acks) < len(messages) and time.monotonic() < deadline:
        time.sleep(0.05)
    published = sum(info.is_published() for info in infos)
    results.put((started, finished, published, time.process_time() - cpu, len(acks)))
    for client in clients:
        client.disconnect()
        client.loop_stop()


def _lean_publisher_main(job: PublisherJob, ready, go, results) -> None:
    """``publisher_main`` with ``bench.lean_meters``: one connection per meter, its own login."""
    from bench.lean_meters import MeterLink, links_run
    from meters.protocol import topic_ack

    per_meter: list[list[tuple[str, bytes]]] = [[] for _ in job.meters]
    for number, topic, payload in _payloads(job):
        per_meter[number].append((topic, payload))
    links = [
        MeterLink.connect(
            job.host,
            job.port,
            meter,
            secret,
            topic_ack(grid, meter) if job.subscribe_acks else None,
            messages,
        )
        for (grid, meter, secret), messages in zip(job.meters, per_meter, strict=True)
    ]
    ready.put(os.getpid())
    go.wait()
    started, cpu = time.time(), time.process_time()
    total = sum(len(messages) for messages in per_meter)
    finished = links_run(links, total if job.subscribe_acks else 0, publish_timeout_s=300, acks_timeout_s=ACK_WAIT_S)
    refused = sum(link.refused for link in links)
    acks = sum(link.acks for link in links)
    results.put((started, finished, total - refused, time.process_time() - cpu, acks))
    for link in links:
        link.close()


def raw_subscriber_main(host: str, port: int, username: str, password: str, expected: int, ready, results) -> None:
    """Count ``bench/raw`` messages at QoS 1 (paho acks each on return) and
    report ``(first, last)`` receive wall times."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen, times, done = [0], [0.0, 0.0], threading.Event()

    def on_message(client, userdata, message):
        seen[0] += 1
        if seen[0] == 1:
            times[0] = time.time()
        if seen[0] >= expected:
            times[1] = time.time()
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-sub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.put("subscribed")
    client.on_connect = lambda c, *args: c.subscribe("bench/raw", qos=1)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    done.wait(600)
    results.put((times[0], times[1], seen[0]))
    client.disconnect()
    client.loop_stop()


class Fleet:
    """Runs publisher jobs in spawned processes and times them."""

    def __init__(self) -> None:
        self.context = mp.get_context("spawn")

    def run(self, jobs: list[PublisherJob], before_go=None) -> tuple[float, float, int, float, int]:
        """``(first publish, last PUBACK, messages published, CPU seconds of
        the publishers, acks the meters received)``."""
        ready, results, go = self.context.Queue(), self.context.Queue(), self.context.Event()
        processes = [self.context.Process(target=publisher_main, args=(job, ready, go, results)) for job in jobs]
        for process in processes:
            process.start()
        for _ in processes:
            ready.get(timeout=600)
        if before_go:
            before_go()
        go.set()
        reports = [results.get(timeout=900) for _ in processes]
        for process in processes:
            process.join(30)
        return (
            min(r[0] for r in reports),
            max(r[1] for r in reports),
            sum(r[2] for r in reports),
            sum(r[3] for r in reports),
            sum(r[4] for r in reports),
        )


def split(items: list, parts: int) -> list[list]:
    return [items[index::parts] for index in range(parts) if items[index::parts]]


# -- the backend side -------------------------------------------------------------


class Ingest:
    """``manage.py ingest_mqtt`` as subprocesses on the bench database: one, or
    one per shard of grids (``--grid``, its own client id and persistent session)."""

    def __init__(self, broker, database_url: str, workdir: Path, args) -> None:
        self.broker, self.database_url, self.workdir = broker, database_url, workdir
        self.batch = ["--batch-size", str(args.batch_size), "--batch-ms", str(args.batch_ms), "--log-every", "100000"]
        self.shards = args.shards
        self.processes: list[subprocess.Popen] = []

    def _command(self, shard: int) -> list[str]:
        command = [sys.executable, "manage.py", "ingest_mqtt", *self.batch]
        if self.shards == 1:
            return [*command, "--client-id", "bench-ingest"]
        return [*command, "--client-id", f"bench-ingest-{shard}", "--grid", shard_grid(shard)]

    def _log(self, shard: int) -> Path:
        return self.workdir / f"ingest-{shard}.log"

    def start(self, wait: bool = True) -> float:
        """Start every shard; with ``wait``, return once all subscribed. Returns the start time."""
        from django.conf import settings

        # As in production: DEBUG off (Django keeps no query log), the same
        # keys as this process (they unseal the meters' secrets).
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "MQTT_URL": self.broker.url,
            "LOG_LEVEL": "INFO",
            "DEBUG": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "METER_SECRET_KEY": settings.METER_SECRET_KEY,
        }
        offsets = [self._log(n).stat().st_size if self._log(n).exists() else 0 for n in range(self.shards)]
        started = time.time()
        for shard in range(self.shards):
            with open(self._log(shard), "ab") as log:
                self.processes.append(subprocess.Popen(self._command(shard), cwd=ROOT, env=env, stdout=log, stderr=log))
        for shard, process in enumerate(self.processes):
            while wait and "subscribed to" not in self._log(shard).read_text(errors="replace")[offsets[shard] :]:
                if process.poll() is not None:
                    raise SystemExit(f"ingest_mqtt exited:\n{self._log(shard).read_text()[-3000:]}")
                time.sleep(0.05)
        return started

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for shard, process in enumerate(self.processes):
            if process.wait(60) != 0:
                raise SystemExit(f"ingest_mqtt did not stop cleanly:\n{self._log(shard).read_text()[-3000:]}")
        self.processes = []

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def rate_lines(self) -> list[str]:
        return [
            (f"[shard {shard}] " if self.shards > 1 else "") + line
            for shard in range(self.shards)
            for line in self._log(shard).read_text(errors="replace").splitlines()
            if "messages in" in line
        ]


def shard_grid(shard: int) -> str:
    return f"bench-{shard}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend serving the bench database but this one."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {pid: cpu_seconds(pid) for (pid,) in cursor.fetchall()}


class CpuMeter:
    """CPU used by the ingest, the broker and PostgreSQL between ``start`` and ``stop``."""

    def __init__(self, ingest: Ingest, broker) -> None:
        self.ingest, self.broker = ingest, broker

    def _sample(self) -> tuple[float, float, dict[int, float]]:
        assert self.broker.process is not None
        ingest = sum(cpu_seconds(pid) for pid in self.ingest.pids())
        return ingest, cpu_seconds(self.broker.process.pid), postgres_cpu()

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        ingest, broker, backends = self._sample()
        return {
            INGEST_CPU: ingest - self.before[0],
            "mosquitto": broker - self.before[1],
            "postgres backends": sum(cpu - self.before[2].get(pid, 0.0) for pid, cpu in backends.items()),
        }


def counted(status: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(SUM(count), 0) FROM meters_ingestcounter WHERE status = %s", [status])
        return int(cursor.fetchone()[0])


def wait_accepted(base: int, target: int, label: str, timeout_s: float) -> float:
    """Poll the accepted counter (committed with the readings) until ``target``
    more than ``base`` were accepted; return the wall time that was first seen."""
    progress = Progress(label, target)
    deadline = time.monotonic() + timeout_s
    while True:
        done = counted("accepted") - base
        progress.advance(done - progress.done)
        if done >= target:
            seen = time.time()
            progress.finish()
            return seen
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}: only {done:,} of {target:,} accepted after {timeout_s:.0f} s")
        time.sleep(0.02)


def grids_register(shards: int, first_start: datetime) -> list[str]:
    from meters.services import grid_create

    return [grid_create(shard_grid(n), f"Bench {n}", first_start).slug for n in range(shards)]


def fleet_register(prefix: str, count: int, grids: list[str]) -> list[tuple[str, str, str]]:
    """``count`` meters named ``<prefix>-NNNN``, spread over ``grids`` in turn."""
    from meters.models import Grid
    from meters.services import meter_add

    by_slug = {grid.slug: grid for grid in Grid.objects.filter(slug__in=grids)}
    issued = [meter_add(by_slug[grids[n % len(grids)]], f"{prefix}-{n:04d}", "consumer") for n in range(count)]
    return [(item.meter.grid.slug, item.meter.public_id, item.secret) for item in issued]


def jobs_for(broker, meters, args, first_start: datetime, per_meter: int, acks: bool) -> list[PublisherJob]:
    return [
        PublisherJob(broker.host, broker.port, group, first_start, 0, per_meter, acks, meter_client=args.meter_client)
        for group in split(meters, args.publishers)
    ]


# -- the measurements ---------------------------------------------------------------


def raw_mqtt(broker, messages: int, publishers: int) -> float:
    """Messages per second through paho → Mosquitto → paho at QoS 1, no processing."""
    context = mp.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    subscriber = context.Process(
        target=raw_subscriber_main,
        args=(broker.host, broker.port, broker.backend_username, broker.backend_password, messages, ready, results),
    )
    subscriber.start()
    ready.get(timeout=60)
    per = messages // publishers
    jobs = [
        PublisherJob(
            broker.host,
            broker.port,
            [],
            datetime.now(UTC),
            0,
            0,
            False,
            broker.backend_username,
            broker.backend_password,
            per + (messages - per * publishers if n == 0 else 0),
            meter_client="paho",
        )
        for n in range(publishers)
    ]
    with step(f"raw paho→mosquitto→paho QoS 1 ({messages:,})"):
        started, _, published, _, _ = Fleet().run(jobs)
        _, last, received = results.get(timeout=600)
    subscriber.join(30)
    assert published == received == messages, (published, received)
    return messages / (last - started)


def raw_copy(rows: int) -> float:
    """Rows per second COPY writes into a table shaped like ``meters_reading``."""
    import io

    from django.db import connection

    start = datetime(2026, 1, 1, tzinfo=UTC)
    text = "".join(
        f"{n % 997 + 1}\t{(start + timedelta(hours=n // 997)).isoformat()}\t100\t0\t{n}\t0\t2300\t2400\t{n}\t"
        f"{start.isoformat()}\tf\n"
        for n in range(rows)
    )
    from meters.ingest import READING_COLUMNS

    columns = ", ".join(READING_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_reading_copy")
        cursor.execute("CREATE TABLE bench_reading_copy (LIKE meters_reading INCLUDING ALL)")
        with step(f"COPY into a meters_reading twin ({rows:,})"):
            started = time.perf_counter()
            cursor.cursor.copy_expert(f"COPY bench_reading_copy ({columns}) FROM STDIN", io.StringIO(text))
            elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_reading_copy")
    return rows / elapsed


@dataclass
class Figures:
    raw_mqtt_per_s: float = 0.0
    raw_copy_per_s: float = 0.0
    live_readings: int = 0
    live_s: float = 0.0
    backlog_readings: int = 0
    backlog_publish_s: float = 0.0
    backlog_drain_s: float = 0.0
    ingest_lines: tuple[str, ...] = ()
    live_cpu_s: dict[str, float] = field(default_factory=dict)
    live_acks: int = 0
    backlog_cpu_s: dict[str, float] = field(default_factory=dict)
    grids: list[str] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def live(broker, ingest: Ingest, args, figures: Figures) -> None:
    per_meter = args.readings // args.meters
    total = per_meter * args.meters
    first_start = _hours_back(per_meter + 2)
    with step(f"register {args.meters} meters (live)"):
        meters = fleet_register("live", args.meters, figures.grids)
        broker.sync_credentials()
    ingest.start()
    jobs = jobs_for(broker, meters, args, first_start, per_meter, not args.no_meter_acks)
    sys.stderr.write(f"live: {args.publishers} publisher processes sign {total:,} readings, then publish\n")
    base = counted("accepted")
    cpu = CpuMeter(ingest, broker)
    started, published_at, published, publishers_cpu_s, acks = Fleet().run(jobs, before_go=cpu.start)
    finished = wait_accepted(base, total, f"live: {total:,} readings accepted", 900)
    publishers_name = f"{args.publishers} meter publisher processes ({args.meter_client})"
    figures.live_cpu_s = {**cpu.stop(), publishers_name: publishers_cpu_s}
    if published != total:
        raise SystemExit(f"live: the broker confirmed {published:,} of {total:,} readings")
    figures.live_acks = acks
    figures.live_readings, figures.live_s = total, finished - started
    sys.stderr.write(f"live: publishing took {published_at - started:.1f} s, last commit {finished - started:.1f} s\n")


def backlog(broker, ingest: Ingest, args, figures: Figures) -> None:
    per_meter = args.backlog // args.meters
    total = per_meter * args.meters
    first_start = _hours_back(per_meter + 2)
    with step(f"register {args.meters} meters (backlog)"):
        meters = fleet_register("backlog", args.meters, figures.grids)
        broker.sync_credentials()
    ingest.stop()  # its persistent session stays on the broker and queues what follows
    jobs = jobs_for(broker, meters, args, first_start, per_meter, False)
    sys.stderr.write(f"backlog: ingest stopped; {args.publishers} processes sign and publish {total:,} readings\n")
    started, published_at, published, _, _ = Fleet().run(jobs)
    if published != total:
        raise SystemExit(f"backlog: the broker confirmed {published:,} of {total:,} readings")
    figures.backlog_publish_s = published_at - started
    before = counted("accepted")
    drain_started = ingest.start(wait=False)
    cpu = CpuMeter(ingest, broker)
    cpu.start()
    finished = wait_accepted(before, total, f"backlog: drain {total:,}", 3600)
    figures.backlog_cpu_s = cpu.stop()
    figures.backlog_readings, figures.backlog_drain_s = total, finished - drain_started
    assert counted("accepted") - before == total


def _hours_back(count: int) -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=count)


def books_check(expected: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT (meter_id, interval_start)) FROM meters_reading")
        rows, distinct = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM meters_rejectedreading")
        (rejected,) = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM (SELECT meter_id FROM meters_reading GROUP BY meter_id "
            "HAVING max(seq) - min(seq) + 1 <> count(*)) gaps"
        )
        (gapped,) = cursor.fetchone()
    if (rows, distinct, rejected, gapped) != (expected, expected, 0, 0):
        raise SystemExit(
            f"wrong books: {rows=} {distinct=} (expected {expected}), {rejected=}, meters with gaps {gapped}"
        )
    sys.stderr.write(f"check: {rows:,} readings, each once, no gaps, nothing rejected\n")


def report(args, figures: Figures) -> str:
    from django.db import connection

    live_rate = figures.live_readings / figures.live_s
    drain_rate = figures.backlog_readings / figures.backlog_drain_s if figures.backlog_drain_s else 0
    rows = [
        ["raw: paho → Mosquitto → paho, QoS 1", f"{args.raw_messages:,} msgs", "", fmt_rate(figures.raw_mqtt_per_s)],
        [
            "raw: PostgreSQL COPY into a meters_reading twin",
            f"{args.raw_messages:,} rows",
            "",
            fmt_rate(figures.raw_copy_per_s),
        ],
        [
            f"live: {args.meters} meters ({args.meter_client}), {args.publishers} publisher processes, "
            f"{_ingests(args)}" + ("" if args.no_meter_acks else ", meters get their acks"),
            f"{figures.live_readings:,}",
            fmt_s(figures.live_s),
            fmt_rate(live_rate),
        ],
    ]
    if figures.backlog_readings:
        rows.append(
            [
                f"backlog drain (from process start), {_ingests(args)}",
                f"{figures.backlog_readings:,}",
                fmt_s(figures.backlog_drain_s),
                fmt_rate(drain_rate),
            ]
        )
    headers = ["what", "count", "seconds", "per second"]
    table_print(headers, rows)
    lines = [
        "# Ingest benchmark",
        "",
        f"`python -m bench.ingest --readings {args.readings} --meters {args.meters} --publishers {args.publishers} "
        f"--backlog {args.backlog} --batch-size {args.batch_size} --batch-ms {args.batch_ms}"
        + (" --no-meter-acks" if args.no_meter_acks else "")
        + f" --meter-client {args.meter_client}`",
        "",
        f"Machine: {machine_description()}, PostgreSQL {connection.cursor().connection.server_version // 10000}, "
        f"Mosquitto 2.0 (persistence on), everything on the same machine. {datetime.now(UTC):%Y-%m-%d}.",
        "",
        table_markdown(headers, rows),
        f"- End to end: {fmt_rate(live_rate)} accepted readings/s (target {TARGET_RATE:,}/s): "
        + ("met." if live_rate >= TARGET_RATE else "NOT met."),
    ]
    if not args.no_meter_acks:
        lines.append(
            f"- Acks: the meters received {figures.live_acks:,} acks for {figures.live_readings:,} readings "
            f"(waiting up to {ACK_WAIT_S:.0f} s after the last PUBACK)."
        )
    if figures.backlog_readings:
        extrapolated = BACKLOG_TARGET[0] / drain_rate
        label = "measured" if figures.backlog_readings >= BACKLOG_TARGET[0] else "extrapolated linearly from this drain"
        lines.append(
            f"- Backlog: {figures.backlog_readings:,} queued readings drained in {fmt_s(figures.backlog_drain_s)} s; "
            f"1,000,000 would take {extrapolated:.0f} s ({label}; target < {BACKLOG_TARGET[1]:.0f} s)."
        )
        ingest_cpu_s = figures.backlog_cpu_s.get(INGEST_CPU, 0.0)
        if ingest_cpu_s:
            cpu_rate = args.shards * figures.backlog_readings / ingest_cpu_s
            lines.append(
                f"- During the drain {_ingests(args)} used {ingest_cpu_s:.1f} s of CPU "
                f"({ingest_cpu_s / figures.backlog_readings * 1e6:.0f} µs per reading; Mosquitto "
                f"{figures.backlog_cpu_s['mosquitto']:.1f} s, PostgreSQL backends "
                f"{figures.backlog_cpu_s['postgres backends']:.1f} s): with a core each they would drain "
                f"{cpu_rate:,.0f} readings/s, 1,000,000 in {BACKLOG_TARGET[0] / cpu_rate:.0f} s "
                "(a CPU-time bound, not a measurement)."
            )
    if figures.live_cpu_s:
        cpu_rows = [
            [name, f"{seconds:.2f}", f"{seconds / figures.live_readings * 1e6:.0f}"]
            for name, seconds in figures.live_cpu_s.items()
        ]
        total_us = sum(figures.live_cpu_s.values()) / figures.live_readings * 1e6
        cpu_rows.append(["all of the above", f"{sum(figures.live_cpu_s.values()):.2f}", f"{total_us:.0f}"])
        lines += [
            "",
            "CPU used during the live run (from /proc; PostgreSQL's shared WAL writer and checkpointer not counted):",
            "",
            table_markdown(["process", "CPU s", "µs per reading"], cpu_rows),
            f"At {total_us:.0f} µs of CPU per reading, {os.cpu_count()} cores allow at most "
            f"{os.cpu_count() * 1e6 / total_us:,.0f} readings/s with meters and backend on the same machine, "
            f"and each ingest process at most {figures.live_readings / figures.live_cpu_s[INGEST_CPU]:,.0f}/s "
            "on a core of its own.",
        ]
    lines += [
        "",
        f"Load average (1, 5, 15 min) before: {figures.load_before[0]:.2f}, {figures.load_before[1]:.2f}, "
        f"{figures.load_before[2]:.2f}; after: {figures.load_after[0]:.2f}, {figures.load_after[1]:.2f}, "
        f"{figures.load_after[2]:.2f} (other work on the machine competes for the same cores).",
    ]
    lines += ["", "ingest_mqtt's own log lines:", "", "```", *figures.ingest_lines, "```", ""]
    return "\n".join(lines)


def _ingests(args) -> str:
    return "1 ingest process" if args.shards == 1 else f"{args.shards} ingest processes (one per grid)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--backlog", type=int, default=200_000, help="0 skips the backlog test")
    parser.add_argument("--shards", type=int, default=1, help="grids, and ingest processes (one per grid: --grid)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-ms", type=int, default=50)
    parser.add_argument("--raw-messages", type=int, default=100_000)
    parser.add_argument("--no-meter-acks", action="store_true", help="meters do not subscribe to their acks")
    parser.add_argument(
        "--meter-client",
        choices=("lean", "paho"),
        default="lean",
        help="how simulated meters speak MQTT: bench.lean_meters (default) or paho-mqtt",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS-ingest.md")
    parser.add_argument("--append", action="store_true", help="add this run to --results instead of replacing it")
    args = parser.parse_args(argv)

    database_url = bench_database_create(BENCH_DB)
    from meters.tests.mosquitto import MosquittoProcess

    figures = Figures(load_before=os.getloadavg())
    workdir = Path(tempfile.mkdtemp(prefix="cw-bench-ingest-"))
    broker = MosquittoProcess(workdir / "mosquitto")
    ingest = Ingest(broker, database_url, workdir, args)
    try:
        with step("start mosquitto"):
            broker.start()
        figures.raw_mqtt_per_s = raw_mqtt(broker, args.raw_messages, args.publishers)
        figures.raw_copy_per_s = raw_copy(args.raw_messages)
        oldest = _hours_back(max(args.readings, args.backlog) // args.meters + 2)
        figures.grids = grids_register(args.shards, oldest)
        live(broker, ingest, args, figures)
        if args.backlog:
            backlog(broker, ingest, args, figures)
        ingest.stop()
        books_check(figures.live_readings + figures.backlog_readings)
        figures.ingest_lines = tuple(ingest.rate_lines())
        figures.load_after = os.getloadavg()
    finally:
        ingest.kill()
        broker.kill()
    text = report(args, figures)
    if args.append and args.results.exists():
        text = args.results.read_text() + "\n" + text.replace("# Ingest benchmark", "## Another run", 1)
    args.results.write_text(text)
    sys.stderr.write(f"figures written to {args.results}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
