"""``manage.py verify_chain [--json]``: every on-chain balance and digest
against the ledger; exits 1 on any difference, 2 when the chain cannot be read."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from contracts.chain import ChainError
from contracts.delivery import mirror_catch_up, mirror_drain
from contracts.services import chain_connected
from contracts.verify import chain_verify


class Command(BaseCommand):
    help = "Compare every on-chain balance and settlement digest with the ledger (exit 1 on a difference)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        try:
            connected = chain_connected()
            if settings.CHAIN_BACKEND == "embedded":
                # This process's in-process chain starts empty: re-mirror first.
                mirror_catch_up(limit=100_000)
                mirror_drain(connected=connected)
            report = chain_verify(connected)
        except ChainError as exc:
            if options["json"]:
                self.stdout.write(json.dumps({"ok": False, "error": str(exc)}))
            raise CommandError(f"cannot read the chain: {exc}", returncode=2) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"{report.backend} contract {report.contract}: {report.accounts_checked} balances and "
                f"{report.settlements_checked} settlement digests checked, {report.batches_pending} batches pending"
            )
            for difference in report.differences:
                self.stdout.write(f"DIFFERENT {difference.what}: {difference.detail}")
            self.stdout.write(
                "OK: the chain matches the ledger" if report.ok else f"{len(report.differences)} differences"
            )
        if not report.ok:
            raise CommandError("the chain differs from the ledger", returncode=1)
