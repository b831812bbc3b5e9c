"""`manage.py meter_state GRID METER_ID [--json]`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from meters.models import Meter
from meters.supply import meters_forecast
from utility import clock
from utility.lib.money import format_uk
from utility.lib.timeutil import format_utc


class Command(BaseCommand):
    help = "Show a meter's balance, supply state, hours left and last decision."

    def add_arguments(self, parser):
        parser.add_argument("grid")
        parser.add_argument("meter_id")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, grid, meter_id, json: bool, **options):
        meter = Meter.objects.select_related("grid", "account").filter(grid__slug=grid, public_id=meter_id).first()
        if meter is None:
            raise CommandError(f"no meter {meter_id!r} on grid {grid!r}")
        forecast = meters_forecast([meter], clock.now())[meter.pk]
        last = meter.decisions.order_by("-seq").first()
        state = {
            "meter": meter.public_id,
            "grid": meter.grid.slug,
            "kind": meter.kind,
            "balance_uk": forecast.balance_uk,
            "state": meter.supply_state,
            "never_disconnect": meter.never_disconnect,
            "avg_cost_uk_per_interval": forecast.avg_cost_uk,
            "intervals_left": forecast.intervals_left,
            "hours_left": forecast.hours_left,
            "last_decision": None
            if last is None
            else {"seq": last.seq, "state": last.state, "reason": last.reason, "issued_at": format_utc(last.issued_at)},
        }
        if json:
            self.stdout.write(_dumps(state))
            return
        hours = "never runs out" if forecast.hours_left is None else f"{forecast.hours_left:.1f} h left"
        self.stdout.write(
            f"{meter.public_id} ({meter.kind}) on {meter.grid.slug}: balance {format_uk(forecast.balance_uk)} k, "
            f"{meter.supply_state}, {hours}"
        )
        if last:
            self.stdout.write(
                f"last decision #{last.seq}: {last.state} ({last.reason}) at {format_utc(last.issued_at)}"
            )


def _dumps(value: dict) -> str:
    return json.dumps(value, sort_keys=True)
