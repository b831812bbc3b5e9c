"""`manage.py meter_force GRID METER_ID connect|disconnect|release --reason TEXT`."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from meters.models import Meter
from meters.supply import SupplyError, meter_force_state, meter_release
from utility import clock


class Command(BaseCommand):
    help = (
        "Force a meter on or off (it stays so until released), or release it back to the automatic "
        "rules; recorded with the operator's name and reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("grid")
        parser.add_argument("meter_id")
        parser.add_argument("action", choices=["connect", "disconnect", "release"])
        parser.add_argument("--reason", required=True, help="why (recorded in the audit log)")
        parser.add_argument("--operator", default=getpass.getuser(), help="operator name (default: the OS user)")

    def handle(self, *args, grid, meter_id, action, reason, operator, **options):
        meter = Meter.objects.filter(grid__slug=grid, public_id=meter_id).first()
        if meter is None:
            raise CommandError(f"no meter {meter_id!r} on grid {grid!r}")
        try:
            if action == "release":
                meter_release(meter, reason, operator, clock.now())
            else:
                meter_force_state(meter, action, reason, operator, clock.now())
        except SupplyError as exc:
            raise CommandError(str(exc)) from exc
        meter.refresh_from_db(fields=["supply_state", "decision_seq"])
        held = "" if action == "release" else ", held until released"
        self.stdout.write(f"{meter_id}: {meter.supply_state} (decision #{meter.decision_seq}){held}")
