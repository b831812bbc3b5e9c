"""`manage.py wallet_credit USERNAME AMOUNT_UK --reason TEXT`: operator-issued coins."""

from __future__ import annotations

import getpass
import uuid

from django.core.management.base import BaseCommand, CommandError

from utility import clock
from utility.lib.money import format_uk
from utility.residents.services import ResidentError, wallet_credit


class Command(BaseCommand):
    help = "Credit a resident's wallet with operator-issued coins (recorded with the operator's name)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("amount_uk", help="whole micro-coins (1 k = 1000000)")
        parser.add_argument("--reason", required=True, help="why the credit is issued (recorded)")
        parser.add_argument("--operator", default=getpass.getuser(), help="operator name (default: the OS user)")
        parser.add_argument("--request-id", help="idempotency key (default: a new one, so each run credits)")

    def handle(self, *args, username, amount_uk, reason, operator, request_id, **options):
        try:
            amount = int(amount_uk)
        except ValueError:
            raise CommandError(f"AMOUNT_UK must be a whole number of µk, got {amount_uk!r}") from None
        try:
            txn = wallet_credit(username, amount, reason, operator, request_id or uuid.uuid4().hex, clock.now())
        except ResidentError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"credited {format_uk(amount)} k to {username} (transaction {txn.idempotency_key})")
