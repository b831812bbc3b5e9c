"""`manage.py meter_state GRID METER_ID [--json] [--history N]`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from meters.models import Meter
from meters.supply import meter_is_held_by_operator, meters_forecast
from utility import clock
from utility.lib.money import format_uk
from utility.lib.timeutil import format_utc


def _decision(decision) -> dict:
    return {
        "seq": decision.seq,
        "state": decision.state,
        "reason": decision.reason,
        "balance_uk": decision.balance_uk,
        "issued_at": format_utc(decision.issued_at),
        "issued_by": decision.issued_by,
        "published": decision.published,
    }


class Command(BaseCommand):
    help = "Show a meter's balance, supply state, hours left and last decisions (who, why, when)."

    def add_arguments(self, parser):
        parser.add_argument("grid")
        parser.add_argument("meter_id")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--history", type=int, default=1, metavar="N", help="last N decisions (default 1)")

    def handle(self, *args, grid, meter_id, json: bool, history: int, **options):
        if history < 1:
            raise CommandError(f"--history must be at least 1, got {history}")
        meter = Meter.objects.select_related("grid").filter(grid__slug=grid, public_id=meter_id).first()
        if meter is None:
            raise CommandError(f"no meter {meter_id!r} on grid {grid!r}")
        forecast = meters_forecast([meter], clock.now())[meter.pk]
        decisions = [_decision(d) for d in meter.decisions.order_by("-seq")[:history]]
        state = {
            "meter": meter.public_id,
            "grid": meter.grid.slug,
            "kind": meter.kind,
            "active": meter.active,
            "balance_uk": forecast.balance_uk,
            "state": forecast.state,
            "held_by_operator": meter_is_held_by_operator(meter),
            "never_disconnect": meter.never_disconnect,
            "avg_cost_uk_per_interval": forecast.avg_cost_uk,
            "intervals_left": forecast.intervals_left,
            "hours_left": forecast.hours_left,
            "last_decision": decisions[0] if decisions else None,
            "decisions": decisions,
        }
        if json:
            self.stdout.write(_dumps(state))
            return
        self._print(state, forecast.hours_left)

    def _print(self, state: dict, hours_left: float | None) -> None:
        hours = "never runs out" if hours_left is None else f"{hours_left:.1f} h left"
        held = ", held by an operator" if state["held_by_operator"] else ""
        self.stdout.write(
            f"{state['meter']} ({state['kind']}) on {state['grid']}: balance {format_uk(state['balance_uk'])} k, "
            f"{state['state']}{held}, {hours}"
        )
        if not state["decisions"]:
            self.stdout.write("no decision sent yet")
        for d in state["decisions"]:
            self.stdout.write(
                f"decision #{d['seq']}: {d['state']} ({d['reason']}) at {d['issued_at']} by {d['issued_by']}"
                f"{'' if d['published'] else ' (not yet published)'}"
            )


def _dumps(value: dict) -> str:
    return json.dumps(value, sort_keys=True)
