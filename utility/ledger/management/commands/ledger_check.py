"""``manage.py ledger_check``: are the books exact?"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from utility.ledger.selectors import ledger_problems, ledger_size


class Command(BaseCommand):
    help = (
        "Verify the ledger: every transaction's entries sum to zero, all entries and all "
        "cached balances sum to zero, and every cached balance equals the sum of its entries. "
        "Prints OK with counts, or names each problem and exits non-zero."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")

    def handle(self, *args, **options) -> None:
        problems = ledger_problems()
        size = ledger_size()
        if options["json"]:
            report = {
                "ok": not problems,
                "accounts": size.accounts,
                "transactions": size.transactions,
                "entries": size.entries,
                "problems": [{"what": p.what, "detail": p.detail} for p in problems],
            }
            self.stdout.write(json.dumps(report, indent=2))
        elif not problems:
            self.stdout.write(
                f"OK: {size.transactions} transactions, {size.entries} entries and {size.accounts} accounts; "
                "every transaction sums to zero, the global sum is zero, every cached balance matches its entries."
            )
        else:
            for problem in problems:
                self.stderr.write(f"{problem.what}: {problem.detail}")
        if problems:
            raise CommandError(f"the ledger has {len(problems)} problem(s)")
