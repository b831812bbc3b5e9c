"""Reads of the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Sum

from .models import Account, Entry, Transaction


def account_balance(account_id: int) -> int:
    """The cached balance in µk (exact: maintained with the entries)."""
    return Account.objects.values_list("balance_uk", flat=True).get(pk=account_id)


def account_balance_from_entries(account_id: int) -> int:
    return Entry.objects.filter(account_id=account_id).aggregate(total=Sum("amount_uk"))["total"] or 0


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    what: str
    detail: str


def ledger_problems() -> list[LedgerProblem]:
    """Everything wrong with the books: unbalanced transactions, a non-zero
    global sum, and cached balances that differ from their entries."""
    problems = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT transaction_id, SUM(amount_uk) FROM ledger_entry GROUP BY transaction_id "
            "HAVING SUM(amount_uk) <> 0 ORDER BY transaction_id LIMIT 100"
        )
        for txn_id, total in cursor.fetchall():
            problems.append(LedgerProblem("unbalanced_transaction", f"transaction {txn_id} sums to {total} µk"))
        cursor.execute("SELECT COALESCE(SUM(amount_uk), 0) FROM ledger_entry")
        (entry_sum,) = cursor.fetchone()
        if entry_sum != 0:
            problems.append(LedgerProblem("global_sum", f"all entries sum to {entry_sum} µk"))
        cursor.execute("SELECT COALESCE(SUM(balance_uk), 0) FROM ledger_account")
        (balance_sum,) = cursor.fetchone()
        if balance_sum != 0:
            problems.append(LedgerProblem("global_balance", f"all balances sum to {balance_sum} µk"))
        cursor.execute(
            "SELECT a.code, a.balance_uk, COALESCE(e.total, 0) FROM ledger_account a "
            "LEFT JOIN (SELECT account_id, SUM(amount_uk) AS total FROM ledger_entry GROUP BY account_id) e "
            "ON e.account_id = a.id WHERE a.balance_uk <> COALESCE(e.total, 0) ORDER BY a.code LIMIT 100"
        )
        for code, cached, derived in cursor.fetchall():
            problems.append(LedgerProblem("balance_mismatch", f"{code}: cached {cached} µk, entries say {derived} µk"))
    return problems


@dataclass(frozen=True, slots=True)
class LedgerSize:
    accounts: int
    transactions: int
    entries: int


def ledger_size() -> LedgerSize:
    """How many accounts, transactions and entries the books hold."""
    return LedgerSize(
        accounts=Account.objects.count(),
        transactions=Transaction.objects.count(),
        entries=Entry.objects.count(),
    )
