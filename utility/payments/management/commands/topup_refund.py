"""`manage.py topup_refund TOPUP_ID --reason TEXT [--accept-negative]`: an operator's refund."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from utility import clock
from utility.lib.money import format_uk
from utility.payments.services import PaymentsError, refund_submit, topup_refund


class Command(BaseCommand):
    help = "Refund a whole top-up: its coins are taken back first, then Stripe refunds the payment."

    def add_arguments(self, parser):
        parser.add_argument("topup_id")
        parser.add_argument("--reason", required=True, help="why the top-up is refunded (recorded)")
        parser.add_argument("--operator", default=getpass.getuser(), help="operator name (default: the OS user)")
        parser.add_argument(
            "--accept-negative",
            action="store_true",
            help="refund even if the coins were spent: the wallet goes below zero (and is frozen)",
        )

    def handle(self, *args, topup_id, reason, operator, accept_negative, **options):
        try:
            refund = topup_refund(topup_id, operator, reason, clock.now(), accept_negative=accept_negative)
        except PaymentsError as exc:
            raise CommandError(str(exc)) from exc
        refund = refund_submit(refund.pk)  # also queued after commit; the second call is a no-op
        coins = format_uk(refund.topup.coins_uk)
        self.stdout.write(f"took back {coins} k; refund {refund.pk} is {refund.status} {refund.error}".rstrip())
