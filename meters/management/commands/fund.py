"""`manage.py fund GRID METER_ID AMOUNT_UK --from USERNAME`."""

from __future__ import annotations

import getpass
import uuid

from django.core.management.base import BaseCommand, CommandError

from meters.funding import meter_fund
from meters.models import Meter
from utility.lib.money import format_uk
from utility.residents.services import ResidentError, resident_get


class Command(BaseCommand):
    help = "Move coins from a resident's own wallet to any meter of a grid (recorded with the operator's name)."

    def add_arguments(self, parser):
        parser.add_argument("grid")
        parser.add_argument("meter_id")
        parser.add_argument("amount_uk", help="whole micro-coins (1 k = 1000000)")
        parser.add_argument("--from", dest="username", required=True, help="the resident whose wallet pays")
        parser.add_argument("--request-id", help="idempotency key (default: a new one, so each run funds)")
        parser.add_argument("--operator", default=getpass.getuser(), help="operator name (default: the OS user)")

    def handle(self, *args, grid, meter_id, amount_uk, username, request_id, operator, **options):
        try:
            amount = int(amount_uk)
        except ValueError:
            raise CommandError(f"AMOUNT_UK must be a whole number of µk, got {amount_uk!r}") from None
        meter = Meter.objects.filter(grid__slug=grid, public_id=meter_id).first()
        if meter is None:
            raise CommandError(f"no meter {meter_id!r} on grid {grid!r}")
        try:
            funded = meter_fund(
                resident_get(username), meter, amount, request_id or uuid.uuid4().hex, operator=operator
            )
        except ResidentError as exc:
            raise CommandError(str(exc)) from exc
        verb = "funded" if funded.created else "already applied:"
        debt = f" ({format_uk(funded.debt_paid_uk)} k paid its debt)" if funded.debt_paid_uk else ""
        self.stdout.write(
            f"{verb} {meter_id} with {format_uk(amount)} k from {username}{debt}; "
            f"meter balance {format_uk(funded.meter_balance_uk)} k"
        )
