"""``manage.py meter_add GRID METER_ID --kind KIND``: register a meter, show its secret once."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from meters.models import Grid, MeterKind
from meters.selectors import grid_get
from meters.services import meter_add

from .grid_create import validation_message


class Command(BaseCommand):
    help = (
        "Register a meter on a grid and issue its secret. The secret keys the HMAC of the "
        "meter's readings and is its MQTT password; it is printed once and never again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("grid", help="the grid's slug")
        parser.add_argument("meter_id", help="public id, e.g. M-0001: letters, digits, - and _ (max 40)")
        parser.add_argument("--kind", required=True, choices=MeterKind.values, help="what the meter measures")
        parser.add_argument("--public", action="store_true", help="a street light: its balance is visible to all")
        parser.add_argument("--label", default="", help="free text, e.g. an address")
        parser.add_argument("--owner", metavar="USERNAME", help="the resident who owns the meter")

    def handle(self, *args, **options) -> None:
        try:
            grid = grid_get(options["grid"])
        except Grid.DoesNotExist:
            raise CommandError(f"no grid called {options['grid']!r} (create it with grid_create)") from None
        try:
            issued = meter_add(
                grid,
                options["meter_id"],
                options["kind"],
                public=options["public"],
                label=options["label"],
                owner_username=options["owner"],
            )
        except ValidationError as exc:
            raise CommandError(f"meter not added: {validation_message(exc)}") from None
        meter = issued.meter
        owner = f", owner {meter.owner.get_username()}" if meter.owner else ""
        self.stdout.write(f"Added {meter.kind} meter {meter.public_id} to grid {grid.slug}{owner}.")
        self.stdout.write(f"Secret: {issued.secret}")
        self.stdout.write("Store it in the meter now: it will not be shown again.")
