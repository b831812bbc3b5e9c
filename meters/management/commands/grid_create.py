"""``manage.py grid_create SLUG``: open a new grid with its rules."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meters.services import grid_create
from utility.lib.money import format_uk
from utility.lib.timeutil import format_utc

# Command-line option → grid rule (all integers, validated by the service).
RULE_OPTIONS = {
    "interval_s": ("--interval-s", "settlement interval in seconds, dividing a day (default 3600)"),
    "tariff_uk_per_kwh": ("--tariff-uk-per-kwh", "tariff in µk per kWh (default 1000000 = 1 k/kWh)"),
    "fee_fixed_uk": ("--fee-fixed-uk", "utility fee per interval in µk (default 10000 = 0.01 k)"),
    "fee_bp": ("--fee-bp", "utility fee as basis points of the pool, 0-10000 (default 0)"),
    "credit_limit_uk": ("--credit-limit-uk", "how far below zero a meter account may go, in µk (default 0)"),
    "credit_grace_s": (
        "--credit-grace-s",
        "how long a meter may stay past its credit limit (warned) before it is cut, in s (default 0)",
    ),
    "loss_alert_bp": ("--loss-alert-bp", "alert when the loss exceeds these basis points (default 1500)"),
    "settlement_grace_s": ("--grace-s", "wait this long after an interval ends before settling it (default 600)"),
    "coin_price_cents": ("--coin-price-cents", "price of one coin in fiat cents (default 100)"),
}


def validation_message(error: ValidationError) -> str:
    """``field: message; field: message`` from a ValidationError."""
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in sorted(error.message_dict.items()))
    return " ".join(error.messages)


class Command(BaseCommand):
    help = (
        "Create a grid called SLUG with its pool and fee accounts. Money in integer µk "
        "(1 k = 1000000 µk), energy in Wh; settlement starts with the current interval."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="short unique id: letters, digits, - and _ (max 40)")
        parser.add_argument("--name", default="", help="display name (default: the slug)")
        for dest, (flag, text) in RULE_OPTIONS.items():
            parser.add_argument(flag, dest=dest, type=int, metavar="N", help=text)

    def handle(self, *args, **options) -> None:
        rules = {dest: options[dest] for dest in RULE_OPTIONS if options[dest] is not None}
        try:
            grid = grid_create(options["slug"], options["name"], timezone.now(), **rules)
        except ValidationError as exc:
            raise CommandError(f"grid not created: {validation_message(exc)}") from None
        self.stdout.write(
            f"Created grid {grid.slug} ({grid.name}): {grid.interval_s} s intervals from "
            f"{format_utc(grid.started_at)}, tariff {format_uk(grid.tariff_uk_per_kwh)} k/kWh, "
            f"fee {format_uk(grid.fee_fixed_uk)} k + {grid.fee_bp} bp, credit limit "
            f"{format_uk(grid.credit_limit_uk)} k, loss alert {grid.loss_alert_bp} bp, "
            f"grace {grid.settlement_grace_s} s, coin price {grid.coin_price_cents} cents."
        )
