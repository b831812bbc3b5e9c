"""Shared helpers for the benchmarks in ``bench/``: a dedicated database, bulk
loading by COPY, a progress bar, the raw COPY speed to compare against, and
plain tables.

Each benchmark runs in its own PostgreSQL database (dropped and created on
every run), on the server that ``DATABASE_URL`` names, so that a run never
touches the development or test data and always starts from the same state.
"""

from __future__ import annotations

import io
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

DEFAULT_BENCH_DB = "commonwatt_bench"
COPY_CHUNK_ROWS = 100_000


class Progress:
    """A one-line progress bar on stderr: ``label [#####.....] 52% 520,000/1,000,000 3.1 s``.

    Redrawn at most ten times a second on a terminal; elsewhere (CI, a pipe)
    only the final line is printed, so logs stay short.
    """

    WIDTH = 30

    def __init__(self, label: str, total: int, stream=None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.note = ""
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.perf_counter()
        self._drawn_at = 0.0
        self._draw(force=True)

    def advance(self, count: int = 1, note: str = "") -> None:
        """Count ``count`` more done; ``note`` (e.g. the step just finished) is shown after the bar."""
        self.done = min(self.done + count, self.total)
        self.note = note
        self._draw()

    def finish(self) -> float:
        """Close the bar; return the seconds it was open."""
        self.done = self.total
        self.note = ""
        elapsed = time.perf_counter() - self.started
        self._draw(force=True, final=True)
        return elapsed

    def _draw(self, force: bool = False, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and (not self.live or (not force and now - self._drawn_at < 0.1)):
            return
        self._drawn_at = now
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = (
            f"{self.label:<34} [{bar}] {100 * self.done // self.total:3d}% "
            f"{self.done:,}/{self.total:,} {now - self.started:6.1f} s {self.note}"
        )
        self.stream.write(("\r\033[K" if self.live else "") + line.rstrip() + ("\n" if final else ""))
        self.stream.flush()


@contextmanager
def step(label: str) -> Iterator[None]:
    """A step without a count: prints its label, then its duration."""
    started = time.perf_counter()
    sys.stderr.write(f"{label:<34} ...")
    sys.stderr.flush()
    yield
    sys.stderr.write(f" {time.perf_counter() - started:.2f} s\n")
    sys.stderr.flush()


def database_url_for(name: str, base_url: str | None = None) -> str:
    """``base_url`` (default ``$DATABASE_URL``) with its database replaced by ``name``."""
    import dj_database_url

    base_url = base_url or os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    config = dj_database_url.parse(base_url)
    if not config["ENGINE"].endswith("postgresql"):
        raise SystemExit("the benchmarks need PostgreSQL: set DATABASE_URL=postgres://...")
    head = base_url.split("?", 1)
    path_start = head[0].index("/", head[0].index("//") + 2)
    return head[0][:path_start] + "/" + name + ("?" + head[1] if len(head) > 1 else "")


def bench_database_create(name: str) -> str:
    """Drop and create database ``name``, point Django at it and migrate it.

    Must run before anything imports Django models; returns the database URL.
    """
    import psycopg2
    from psycopg2 import sql

    url = database_url_for(name)
    admin = psycopg2.connect(database_url_for("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "utility.settings")
    import django
    from django.core.management import call_command

    django.setup()
    with step(f"migrate database {name}"):
        call_command("migrate", verbosity=0)
    return url


def copy_rows(
    cursor,
    table: str,
    columns: Sequence[str],
    lines: Iterable[str],
    total: int,
    label: str,
) -> float:
    """COPY tab-separated ``lines`` (each ending in a newline) into ``table``
    in chunks of ``COPY_CHUNK_ROWS``, with a progress bar; returns seconds."""
    progress = Progress(label, total)
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == COPY_CHUNK_ROWS:
            cursor.copy_expert(statement, io.StringIO("".join(chunk)))
            progress.advance(len(chunk))
            chunk = []
    if chunk:
        cursor.copy_expert(statement, io.StringIO("".join(chunk)))
        progress.advance(len(chunk))
    return progress.finish()


@dataclass(frozen=True, slots=True)
class CopySpeed:
    temp_rows_per_s: float  # into a temporary table (no WAL, no index): the raw limit
    logged_rows_per_s: float  # into a logged table shaped like ledger_entry (pk + 2 indexes)


def copy_speed_measure(cursor, rows: int) -> CopySpeed:
    """Rows per second PostgreSQL accepts by COPY here, for ledger-entry-shaped
    rows (three bigints), buffer prepared beforehand so only COPY is timed."""
    text = "".join(f"{i}\t{i % 9973}\t{(i * 7919) % 5_000_000 - 2_500_000}\n" for i in range(rows))
    speeds = []
    for label, ddl in (
        ("COPY into a temp table", "CREATE TEMP TABLE bench_copy (a bigint, b bigint, c bigint)"),
        (
            "COPY into an indexed table",
            "CREATE TABLE bench_copy (a bigint PRIMARY KEY, b bigint, c bigint); "
            "CREATE INDEX ON bench_copy (b, a); CREATE INDEX ON bench_copy (c, a)",
        ),
    ):
        cursor.execute("DROP TABLE IF EXISTS bench_copy")
        cursor.execute(ddl)
        with step(f"{label} ({rows:,} rows)"):
            started = time.perf_counter()
            cursor.copy_expert("COPY bench_copy (a, b, c) FROM STDIN", io.StringIO(text))
            cursor.connection.commit()
            speeds.append(rows / (time.perf_counter() - started))
    cursor.execute("DROP TABLE bench_copy")
    cursor.connection.commit()
    return CopySpeed(*speeds)


class CpuClock:
    """CPU seconds used by this process plus its PostgreSQL backend.

    On a machine shared with other work, wall time measures the neighbours as
    much as the code; CPU time is far steadier. The backend's share is read
    from ``/proc`` and so needs the server on this host (``None`` otherwise).
    """

    def __init__(self, connection) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        self.stat_path = f"/proc/{pid}/stat"
        self.ticks_per_s = os.sysconf("SC_CLK_TCK")
        self.available = self._backend() is not None

    def _backend(self) -> float | None:
        try:
            with open(self.stat_path) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self.ticks_per_s  # utime + stime

    def __call__(self) -> float | None:
        backend = self._backend() if self.available else None
        return None if backend is None else backend + time.process_time()


def load_average() -> str:
    """``2.31`` (the last minute), or ``?`` where the system does not say."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def table_print(headers: Sequence[str], rows: Sequence[Sequence[object]], stream=None) -> None:
    """A plain, right-aligned text table."""
    stream = stream or sys.stdout
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        stream.write("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) + "\n")
        if index == 0:
            stream.write("  ".join("-" * width for width in widths) + "\n")


def table_markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    """``2 cores, 23 GiB, Linux x86_64, Python 3.11.2`` (PostgreSQL added by the caller)."""
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores{memory}, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    )


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"
