"""Benchmark: the dashboard and the meter page with a year of hourly data.

    python -m bench.web [--users 20] [--duration 30] [--think 0.5:1.5] [--workers 3]
                        [--db NAME] [--results bench/RESULTS-web.md]

A grid of a year's hourly intervals (8,760) for a resident's house and roof
and a neighbourhood around them: every reading, settlement run and line is
in the database (bulk loaded by COPY; the lines are computed by the real
settlement engine, ``settlement.domain.engine.settle_interval``, interval by
interval). Then gunicorn serves the real WSGI app on 127.0.0.1 (production
settings: DEBUG off, persistent database connections) and ``--users``
simulated residents, each logged in with their own session, load the
dashboard and the meter page in turns, waiting ``--think`` seconds between
pages (closed loop, like locust's ``between``), for ``--duration`` seconds
after a warm-up. A second run without think time measures saturation.
Every response must be a 200 with the page's content, or the run fails.

Prints p50/p95/p99 latency per page and requests/s; writes the table to
``--results``. Bounded: each run stops after its duration, the server is
stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    bench_database_create,
    copy_rows,
    database_url_for,
    load_average,
    machine_description,
    step,
    table_markdown,
    table_print,
)

ROOT = Path(__file__).resolve().parent.parent
HOURS = 8760
NEIGHBOURS = 8  # other houses, and two more roofs, share each interval
PASSWORD = "bench-password-not-secret"


def hourly(hour: int, table: list[int]) -> int:
    return table[hour % 24]


SUN = [0, 0, 0, 0, 0, 0, 5, 15, 35, 55, 75, 90, 100, 95, 85, 65, 45, 25, 8, 0, 0, 0, 0, 0]
HOME = [30, 25, 22, 20, 22, 30, 55, 80, 60, 45, 40, 42, 45, 40, 38, 45, 60, 85, 100, 95, 80, 65, 50, 38]


def seed(start: datetime) -> None:
    """The grid, its people and meters through the services; a year of
    readings, runs and lines by COPY."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from meters.models import Meter
    from meters.services import grid_create, meter_add
    from settlement.domain.engine import GridRules, MeterUsage, settle_interval
    from utility.residents.services import wallet_credit

    User = get_user_model()
    with step("grid, residents and meters"):
        grid = grid_create("bench", "Bench grid", start, credit_limit_uk=5_000_000)
        hashed = User(username="x")
        hashed.set_password(PASSWORD)  # one slow hash, shared: they all log in with it
        User.objects.bulk_create([User(username=f"resident{i}", password=hashed.password) for i in range(64)])
        meters = [
            meter_add(
                grid, f"R{index}-HOME", "consumer", label=f"House {index}", owner_username=f"resident{index}"
            ).meter
            for index in range(64)
        ]
        meters.append(
            meter_add(grid, "R0-ROOF", "producer", label="Resident 0's roof", owner_username="resident0").meter
        )
        meters += [meter_add(grid, f"P-{i}", "producer", label=f"Roof {i}").meter for i in range(2)]
        meters += [meter_add(grid, f"N-{i}", "consumer", label=f"Neighbour {i}").meter for i in range(NEIGHBOURS)]
        for user in User.objects.filter(username__startswith="resident"):
            wallet_credit(user.username, 100_000_000, "bench", "bench", f"bench-{user.pk}", start)
    # Each resident's house has a year of data; the year's runs hold every meter.
    rules, rng = GridRules(fee_fixed_uk=10_000), random.Random(7)
    pk_of = {m.public_id: m.pk for m in meters}
    scale = {m.public_id: 60 + rng.randrange(80) for m in meters}
    readings, runs, lines, totals = [], [], [], {pid: [0, 0] for pid in pk_of}
    run_id, carry = 0, 0
    for hour in range(HOURS):
        at = start + timedelta(hours=hour)
        usages = []
        for pid in pk_of:
            if pid.endswith("ROOF") or pid.startswith("P-"):
                usage = MeterUsage(pid, 0, 60 * hourly(at.hour, SUN) * (70 + rng.randrange(30)) // 100)
            else:
                usage = MeterUsage(pid, scale[pid] * hourly(at.hour, HOME) // 10, 0)
            usages.append(usage)
            totals[pid][0] += usage.import_wh
            totals[pid][1] += usage.export_wh
            received = at + timedelta(hours=1, seconds=5)
            readings.append(
                f"{pk_of[pid]}\t{at.isoformat()}\t{usage.import_wh}\t{usage.export_wh}\t{totals[pid][0]}\t"
                f"{totals[pid][1]}\t{hour + 1}\t{received.isoformat()}\tf\t{at.isoformat()}\n"
            )
        result = settle_interval(usages, rules, carry)
        carry, run_id = result.carry_out_uk, run_id + 1
        loss_bp = r"\N" if result.loss_bp is None else result.loss_bp
        runs.append(
            f"{run_id}\t{grid.pk}\t{at.isoformat()}\t{(at + timedelta(hours=1)).isoformat()}\tsettled\t"
            f"{rules.tariff_uk_per_kwh}\t{result.carry_in_uk}\t{result.pool_uk}\t{result.fee_uk}\t"
            f"{result.credited_uk}\t{result.carry_out_uk}\t{result.import_wh}\t{result.export_wh}\t"
            f"{result.loss_wh}\t{loss_bp}\t{json.dumps(list(result.alerts))}\t{len(result.lines)}\t0\t"
            f"{(at + timedelta(hours=1, minutes=10)).isoformat()}\n"
        )
        for line in result.lines:
            lines.append(
                f"{run_id}\t{pk_of[line.meter]}\t{line.import_wh}\t{line.export_wh}\t{line.debit_uk}\t{line.credit_uk}\n"
            )
    with connection.cursor() as cursor:
        copy_rows(
            cursor,
            "meters_reading",
            [
                "meter_id",
                "interval_start",
                "import_wh",
                "export_wh",
                "import_total_wh",
                "export_total_wh",
                "seq",
                "received_at",
                "late",
                "settled_in",
            ],
            readings,
            len(readings),
            "readings (a year, every meter)",
        )
        copy_rows(
            cursor,
            "settlement_settlementrun",
            [
                "id",
                "grid_id",
                "interval_start",
                "interval_end",
                "status",
                "tariff_uk_per_kwh",
                "carry_in_uk",
                "pool_uk",
                "fee_uk",
                "credited_uk",
                "carry_out_uk",
                "import_wh",
                "export_wh",
                "loss_wh",
                "loss_bp",
                "alerts",
                "meter_count",
                "late_reading_count",
                "settled_at",
            ],
            runs,
            len(runs),
            "settlement runs",
        )
        copy_rows(
            cursor,
            "settlement_settlementline",
            ["run_id", "meter_id", "import_wh", "export_wh", "debit_uk", "credit_uk"],
            lines,
            len(lines),
            "settlement lines",
        )
        cursor.execute("SELECT setval(pg_get_serial_sequence('settlement_settlementrun', 'id'), %s)", [run_id])
        cursor.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load
    last = start + timedelta(hours=HOURS - 1)
    Meter.objects.filter(grid=grid).update(last_interval_start=last, last_seq=HOURS, last_seen_at=last)
    type(grid).objects.filter(pk=grid.pk).update(settled_through=last + timedelta(hours=1))


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"dashboard": [], "meter": []})
    errors: list[str] = field(default_factory=list)
    served: int = 0  # every answered request, warm-up included (for CPU per request)
    lock: threading.Lock = field(default_factory=threading.Lock)


def login(base: str, username: str):
    import requests

    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{base}/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/login/"},
        timeout=30,
        allow_redirects=False,
    )
    if response.status_code != 302:
        raise SystemExit(f"log-in of {username} failed: {response.status_code}")
    return session


PAGES = {"dashboard": ("/dashboard/", "chart-week"), "meter": ("/meters/{meter}/", "Interval by interval")}


def user_loop(base, index, session, stop_at, record_from, think, stats, seed_value) -> None:
    rng = random.Random(seed_value)
    turn = 0
    while time.perf_counter() < stop_at:
        name = ("dashboard", "meter")[turn % 2]
        path, marker = PAGES[name]
        started = time.perf_counter()
        try:
            response = session.get(base + path.format(meter=f"R{index}-HOME"), timeout=30)
            ok = response.status_code == 200 and marker in response.text
            problem = "" if ok else f"{name}: {response.status_code}"
        except Exception as exc:
            problem = f"{name}: {exc}"
        elapsed = time.perf_counter() - started
        with stats.lock:
            stats.served += 1
            if problem:
                stats.errors.append(problem)
            elif started >= record_from:
                stats.latencies[name].append(elapsed)
        turn += 1
        if think:
            time.sleep(rng.uniform(*think))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes used so far (from /proc)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def server_pids(server: subprocess.Popen, database: str) -> list[int]:
    """gunicorn's master and workers, and the PostgreSQL backends serving them."""
    from django.db import connection

    with open(f"/proc/{server.pid}/task/{server.pid}/children") as children:
        pids = [server.pid, *map(int, children.read().split())]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database])
        return pids + [pid for (pid,) in cursor.fetchall()]


def run_load(base: str, sessions: list, duration: float, warmup: float, think: tuple[float, float] | None, cpu) -> dict:
    stats = Stats()
    cpu_before = cpu()
    begin = time.perf_counter()
    record_from, stop_at = begin + warmup, begin + warmup + duration
    threads = [
        threading.Thread(target=user_loop, args=(base, i, session, stop_at, record_from, think, stats, i), daemon=True)
        for i, session in enumerate(sessions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup + duration + 60)
    measured = sum(len(v) for v in stats.latencies.values())
    cpu_ms = 1000 * (cpu() - cpu_before) / max(1, stats.served)
    return {"stats": stats, "rps": measured / duration, "cpu_ms": cpu_ms}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_start(database_url: str, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "DB_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "MQTT_PUBLISHER": "memory",
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "utility.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--log-level",
        "warning",
        "--timeout",
        "60",
    ]
    log = open(ROOT / "var" / "bench-web-gunicorn.log", "w")  # noqa: SIM115 - closed with the server
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.perf_counter() + 180
    while time.perf_counter() < deadline:
        try:
            # The first request of each worker imports the URL conf: be patient.
            if requests.get(base + "/login/", timeout=60).status_code == 200:
                return server, base
        except requests.RequestException:
            time.sleep(0.5)
    server_stop(server)
    raise SystemExit("gunicorn did not start: see var/bench-web-gunicorn.log")


def server_stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--think", default="0.5:1.5", help="seconds between a user's pages, min:max")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--db", default="commonwatt_bench_web")
    parser.add_argument("--results", default=str(ROOT / "bench" / "RESULTS-web.md"))
    parser.add_argument("--reuse", action="store_true", help="keep the database of an earlier run (no reseeding)")
    args = parser.parse_args()
    if not 1 <= args.users <= 64:
        parser.error("--users must be between 1 and 64")
    think = tuple(float(x) for x in args.think.split(":"))
    if args.reuse:  # the data of an earlier run, as it is
        database_url = database_url_for(args.db)
        os.environ["DATABASE_URL"] = database_url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "utility.settings")
        import django

        django.setup()
    else:
        database_url = bench_database_create(args.db)
        seed(datetime(2025, 1, 1, tzinfo=UTC))
    server, base = server_start(database_url, args.workers, args.threads)
    rows, failed = [], False
    load_before = load_average()
    try:
        # Log every user in first: a log-in hashes a password (PBKDF2, about
        # a second of CPU by design), which is not what is measured here.
        with step(f"log in {args.users} residents"):
            sessions = [login(base, f"resident{i}") for i in range(args.users)]
        for label, pause in (
            (f"{args.users} users, {args.think} s think", think),
            (f"{args.users} users, no think", None),
        ):
            with step(f"load: {label}"):
                # Server CPU per request (gunicorn + PostgreSQL): what each page costs
                # whatever else the machine is doing.
                # Backends opened during the run count whole: they did only this run's work.
                result = run_load(
                    base, sessions, args.duration, args.warmup, pause, lambda: cpu_seconds(server_pids(server, args.db))
                )
            stats = result["stats"]
            if stats.errors:
                failed = True
                print(f"{len(stats.errors)} errors, e.g. {stats.errors[:3]}", file=sys.stderr)
            for page, values in stats.latencies.items():
                rows.append(
                    [
                        label,
                        page,
                        len(values),
                        f"{1000 * percentile(values, 0.5):.0f}",
                        f"{1000 * percentile(values, 0.95):.0f}",
                        f"{1000 * percentile(values, 0.99):.0f}",
                        f"{len(values) / args.duration:.1f}",
                        len([e for e in stats.errors if e.startswith(page)]),
                        "",
                    ]
                )
            rows.append(
                [
                    label,
                    "all",
                    sum(len(v) for v in stats.latencies.values()),
                    "",
                    "",
                    "",
                    f"{result['rps']:.1f}",
                    len(stats.errors),
                    f"{result['cpu_ms']:.1f}",
                ]
            )
    finally:
        server_stop(server)
    headers = ["load", "page", "requests", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors", "server CPU ms/req"]
    table_print(headers, rows)
    think_rows = [r for r in rows if "think" in r[0] and "no think" not in r[0] and r[1] != "all"]
    worst_p95 = max(int(r[4]) for r in think_rows)
    verdict = "under" if worst_p95 < 150 else "OVER"
    print(f"p95 with think time: {worst_p95} ms ({verdict} the 150 ms target)")
    cpu_ms = float(rows[-1][-1])
    capacity = 1000 * (os.cpu_count() or 1) / cpu_ms
    print(f"server CPU per request: {cpu_ms:.1f} ms (at most ~{capacity:.0f} pages/s on {os.cpu_count()} idle cores)")
    Path(args.results).write_text(
        "# Web benchmark\n\n"
        f"`python -m bench.web --users {args.users} --duration {args.duration:g} --think {args.think} "
        f"--workers {args.workers} --threads {args.threads}` on {machine_description()}; "
        f"load average {load_before} before the runs and {load_average()} when they finished (the run without "
        "think time saturates the machine itself; other work on the machine slows every figure).\n\n"
        f"Data: one resident's house with a year of hourly data ({HOURS:,} readings and settlement lines; "
        f"{HOURS:,} runs of {64 + 3 + NEIGHBOURS} meters), loaded by COPY, the lines computed by the settlement "
        "engine. Server: gunicorn (gthread) on 127.0.0.1, DEBUG off, persistent database connections. "
        "Each simulated resident logs in first (not measured: a log-in hashes a password, a second of CPU by "
        "design), then loads their dashboard and their house's meter page in turns (HTML only, as a browser "
        "with cached assets). Latency is measured by the client.\n\n"
        + table_markdown(headers, rows)
        + f"\n\np95 with think time: **{worst_p95} ms** ({verdict} the 150 ms target). The run without think time "
        "is saturation: every user asks again at once, so latency there is the queue.\n\n"
        f"Server CPU per request (gunicorn workers and their PostgreSQL backends, from /proc; the load "
        f"generator's own CPU not counted): **{cpu_ms:.1f} ms**, so this machine's {os.cpu_count()} cores serve "
        f"at most about {capacity:.0f} pages/s when nothing else runs. Latency depends on what else the "
        "machine does; this figure does not.\n"
    )
    print(f"results written to {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
