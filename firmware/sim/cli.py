"""``python -m firmware.sim``: run a simulated fleet against an MQTT broker.

    python -m firmware.sim --meters-file meters.json --broker mqtt://127.0.0.1:1883 \\
        --speed 180 --faults offline:M-H001@2h+5h garbage:M-H002 jump:M-H003@6h

The meters file (JSON) names the grid and each meter's credentials::

    {"grid": "demo", "interval_s": 3600,
     "meters": [{"meter": "M-ANGEL", "secret": "…", "profile": "solar"},
                {"meter": "SL-0001", "secret": "…", "kind": "consumer", "public": true}]}

A meter has a ``profile`` (solar, household, light, battery) or a registry
``kind`` (producer, consumer, prosumer) and ``public``; optional ``scale``
(solar peak W, household %, light W), and ``seq``/``import_total_wh``/
``export_total_wh`` to resume where the backend left it. Meters log in to the
broker with their own id and secret (the user and password in ``--broker``
are ignored). ``manage.py simulate`` builds the same fleet from the database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from firmware.journal import FileJournal

from .clock import SimClock
from .faults import Fault, fault_parse
from .fleet import Fleet, FleetStats
from .plan import MeterSpec, profile_for
from .profiles import Weather


def broker_parse(url: str) -> tuple[str, int, bool]:
    """``mqtt://host:port`` (``mqtts://`` for TLS) → (host, port, tls); ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"the broker is mqtt://host:port or mqtts://host:port, not {url!r}")
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


def paho_transports(url: str) -> Callable[[MeterSpec], object]:
    """A transport factory: each meter logs in to ``url`` with its id and secret."""
    from firmware.transport_paho import PahoTransport

    host, port, tls = broker_parse(url)
    return lambda spec: PahoTransport(host, port, spec.meter, spec.secret, tls=tls)


def file_journals(directory: str | Path) -> Callable[[MeterSpec], object]:
    """A journal factory: one durable journal per meter under ``directory``, so
    a restarted simulator resumes each meter's seq, registers and queue."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    return lambda spec: FileJournal(str(root / spec.meter))


def meters_file_load(path: str | Path) -> tuple[str, int, list[MeterSpec]]:
    """(grid, interval_s, specs) from a meters file; ``ValueError`` says what is wrong."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the meters file {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("meters"), list):
        raise ValueError('the meters file is {"grid": ..., "interval_s": ..., "meters": [...]}')
    grid, interval_s = document.get("grid"), document.get("interval_s", 3600)
    if not isinstance(grid, str) or not grid or type(interval_s) is not int or interval_s < 60 or 86400 % interval_s:
        raise ValueError("the meters file needs a grid slug and an interval_s that divides a day")
    specs = []
    for entry in document["meters"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("meter"), str) or not entry.get("secret"):
            raise ValueError(f"each meter needs a meter id and its secret: {str(entry)[:80]}")
        profile = entry.get("profile") or profile_for(entry.get("kind", "consumer"), bool(entry.get("public")))
        resume = {name: entry[name] for name in ("seq", "import_total_wh", "export_total_wh") if name in entry}
        specs.append(MeterSpec(entry["meter"], entry["secret"], profile, entry.get("scale"), **resume))
    if not specs:
        raise ValueError("the meters file lists no meters")
    return grid, interval_s, specs


def fleet_run(fleet: Fleet, stop: threading.Event, *, hours: float | None = None, tick_s: float = 0.2) -> FleetStats:
    """Run ``fleet`` until ``stop`` (or ``hours`` simulated hours from its start)."""
    until_s = None if hours is None else fleet.start_s + int(hours * 3600)
    return fleet.run(stop, until_s=until_s, tick_s=tick_s)


def clock_make(speed: float, start: str | None, clock_file: str | None) -> SimClock:
    start_s = None
    if start:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(f"--start needs a UTC offset (e.g. 2026-01-01T00:00:00Z), got {start!r}")
        start_s = moment.timestamp()
    return SimClock(start_s, speed, state_path=clock_file)


@contextlib.contextmanager
def stop_on_signals():
    """An event that SIGINT or SIGTERM sets (the fleet then shuts down
    cleanly); the previous handlers are back afterwards."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``python -m firmware.sim`` and ``manage.py simulate`` share."""
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (180: an hour in 20 s)"
    )
    parser.add_argument(
        "--start", help="simulated start, ISO 8601 UTC (default: now; ignored with an existing --clock-file)"
    )
    parser.add_argument("--hours", type=float, help="stop after this many simulated hours (default: run until Ctrl-C)")
    parser.add_argument(
        "--faults",
        nargs="*",
        default=[],
        type=_fault_arg,
        metavar="FAULT",
        help="offline:METER@AT+FOR, garbage:METER[@AT][+FOR], jump:METER@AT[*FACTOR]",
    )
    parser.add_argument("--clock-file", help="share the simulated clock with other processes through this file")
    parser.add_argument("--state-dir", help="keep each meter's journal here (durable across restarts)")
    parser.add_argument("--cloud", type=_percent, help="force this cloud cover, %%, on every day")
    parser.add_argument("--tick-ms", type=_positive, default=200, help="real milliseconds between steps (200)")
    parser.add_argument("--verbose", action="store_true", help="print every meter's own log lines")


def _percent(text: str) -> int:
    if not text.isdigit() or int(text) > 100:
        raise argparse.ArgumentTypeError(f"a whole percentage 0-100, not {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number ≥ 1, not {text!r}")
    return int(text)


def _fault_arg(text: str) -> Fault:
    try:
        return fault_parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters-file", required=True, help="JSON: the grid and each meter's id, secret and kind")
    parser.add_argument("--broker", required=True, help="mqtt://host:port (mqtts:// for TLS)")
    add_run_arguments(parser)
    options = parser.parse_args(argv)
    try:
        grid, interval_s, specs = meters_file_load(options.meters_file)
        clock = clock_make(options.speed, options.start, options.clock_file)
        fleet = Fleet(
            grid,
            specs,
            clock,
            paho_transports(options.broker),
            interval_s=interval_s,
            faults=options.faults,
            weather=None if options.cloud is None else Weather(fixed_pct=options.cloud),
            journal_factory=file_journals(options.state_dir) if options.state_dir else None,
            progress=_print,
            log=_print if options.verbose else None,
        )
    except ValueError as exc:
        parser.error(str(exc))
    _print(f"{len(specs)} meters on grid {grid!r}, speed {clock.speed:g}x, faults: {len(options.faults) or 'none'}")
    with stop_on_signals() as stop:
        stats = fleet_run(fleet, stop, hours=options.hours, tick_s=options.tick_ms / 1000)
    _print(f"stopped: {stats.summary()}")
    return 0


def _print(line: str) -> None:
    print(line, flush=True)
