"""``manage.py chain_status [--json]``: the chain mirror's lag and status for operators."""

from __future__ import annotations

import json
from dataclasses import asdict

from django.core.management.base import BaseCommand

from contracts.selectors import mirror_status


class Command(BaseCommand):
    help = "Show the chain mirror: reachable, batches pending/applied/failed, lag."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the status as JSON")

    def handle(self, *args, **options):
        status = mirror_status()
        if options["json"]:
            self.stdout.write(json.dumps(asdict(status), default=str, indent=2))
            return
        self.stdout.write(
            f"{status.backend} contract {status.contract or '(none)'}: "
            f"{'reachable' if status.reachable else 'UNREACHABLE ' + status.error}\n"
            f"batches: {status.batches_applied} applied, {status.batches_pending} pending, "
            f"{status.batches_failed} failed of {status.batches_total}; "
            f"settlements not yet planned: {status.settlements_unplanned}\n"
            f"lag: {status.lag_s} s; last applied {status.last_applied_at or '-'} {status.last_tx_hash}"
        )
