"""``manage.py simulate --grid GRID``: the grid's registered meters, simulated.

Runs the real firmware for each active meter of the grid (``firmware.sim``),
with its secret from the registry, against the broker in ``MQTT_URL``; the
meters log in with their own ids and secrets (run ``mosquitto_config`` after
adding meters). ``--meters N`` simulates the first N meters in registration
order (it never creates meters: registering a meter is an operator's act,
and the demo seed already registers a few dozen). A line per simulated
interval: readings closed, sent, acked, queued.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from demo.clock import demo_clock_start
from demo.fleet import grid_fleet, grid_fleet_stale
from firmware.sim.cli import add_run_arguments, file_journals, fleet_run, stop_on_signals
from firmware.sim.profiles import Weather
from meters.models import Grid
from meters.selectors import grid_get


class Command(BaseCommand):
    help = "Simulate a grid's meters (the real firmware, one process) against the MQTT broker in MQTT_URL."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--grid", required=True, help="the grid's slug")
        parser.add_argument("--meters", type=int, help="simulate only the first N active meters (by registration)")
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        try:
            grid = grid_get(options["grid"])
        except Grid.DoesNotExist:
            raise CommandError(f"no grid {options['grid']!r}") from None
        if options["meters"] is not None and options["meters"] < 1:
            raise CommandError("--meters must be at least 1")
        try:
            start = datetime.fromisoformat(options["start"].replace("Z", "+00:00")) if options["start"] else None
            if start is not None and start.utcoffset() is None:
                raise ValueError("--start needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
            clock = demo_clock_start(
                start=start, speed=options["speed"], interval_s=grid.interval_s, state_path=options["clock_file"]
            )
            fleet = grid_fleet(
                grid,
                clock.sim,
                limit=options["meters"],
                faults=options["faults"],
                journals=file_journals(options["state_dir"]) if options["state_dir"] else None,
                weather=Weather(fixed_pct=options["cloud"]) if options["cloud"] is not None else None,
                progress=self._write,
                log=self._write if options["verbose"] else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not fleet.meters:
            raise CommandError(f"grid {grid.slug!r} has no active meters")
        stale = grid_fleet_stale(grid, datetime.fromtimestamp(fleet.start_s, UTC), options["meters"])
        if stale and not options["state_dir"]:
            self.stderr.write(
                f"warning: {len(stale)} meters (e.g. {stale[0]}) already have readings for the simulated start "
                "interval or later; their first readings will be refused as stale (start later)"
            )
        self._write(
            f"simulating {len(fleet.meters)} meters of grid {grid.slug!r} from "
            f"{datetime.fromtimestamp(fleet.start_s, UTC):%Y-%m-%d %H:%MZ} at {clock.speed:g}x"
            f" (faults: {', '.join(f'{f.kind}:{f.meter}' for f in options['faults']) or 'none'}); Ctrl-C stops"
        )
        with stop_on_signals() as stop:
            stats = fleet_run(fleet, stop, hours=options["hours"], tick_s=options["tick_ms"] / 1000)
        self._write(f"stopped: {stats.summary()}")

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
