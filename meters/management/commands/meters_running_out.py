"""`manage.py meters_running_out GRID [--within-hours 24] [--json]`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from meters.models import Grid
from meters.supply import SupplyError, meters_running_out
from utility import clock
from utility.lib.money import format_uk


class Command(BaseCommand):
    help = "List the grid's meters whose balance runs out within a day (or --within-hours) at their recent use."

    def add_arguments(self, parser):
        parser.add_argument("grid")
        parser.add_argument("--within-hours", type=int, default=24)
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, grid, within_hours, json: bool, **options):
        found = Grid.objects.filter(slug=grid).first()
        if found is None:
            raise CommandError(f"no grid {grid!r}")
        try:
            soon = meters_running_out(found, within_hours, now=clock.now())
        except SupplyError as exc:
            raise CommandError(str(exc)) from exc
        rows = [
            {
                "meter": f.public_id,
                "state": f.state,
                "balance_uk": f.balance_uk,
                "avg_cost_uk_per_interval": f.avg_cost_uk,
                "hours_left": f.hours_left,
            }
            for f in soon
        ]
        if json:
            self.stdout.write(_dumps(rows))
            return
        self.stdout.write(f"{len(rows)} meters on {grid} run out within {within_hours} h")
        for row in rows:
            self.stdout.write(
                f"{row['meter']:<24} {row['state']:<10} balance {format_uk(row['balance_uk']):>14} k  "
                f"{row['hours_left']:.1f} h left"
            )


def _dumps(value: list) -> str:
    return json.dumps(value, sort_keys=True)
