"""Reads of the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
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
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Whole-table aggregates and anti-joins: hash plans, whatever the
            # statistics say (stale ones after a bulk load once chose nested
            # loops that went quadratic). Only for this transaction.
            cursor.execute("SELECT set_config('enable_nestloop', 'off', true)")
        cursor.execute(
            "SELECT e.id, e.account_id, e.transaction_id FROM ledger_entry e "
            "WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = e.account_id) "
            "OR NOT EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.id = e.transaction_id) ORDER BY e.id LIMIT 100"
        )
        for entry_id, account_id, txn_id in cursor.fetchall():
            problems.append(
                LedgerProblem(
                    "dangling_entry",
                    f"entry {entry_id} names account {account_id} and transaction {txn_id}: one of them does not exist",
                )
            )
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


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """An account's balance including exactly the entries up to ``through_entry_id``."""

    account_id: int
    code: str
    balance_uk: int
    through_entry_id: int


def transaction_account_snapshots(transaction_id: int) -> list[AccountSnapshot]:
    """The balances of the accounts a transaction touched, by account id.

    One statement, so one snapshot: ``balance_uk`` and the account's last
    entry id are read together. A transaction not yet committed cannot hide
    behind them: it locks the account before writing its entries, so every
    entry it adds gets an id above ``through_entry_id``.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.id, a.code, a.balance_uk, "
            "(SELECT MAX(e2.id) FROM ledger_entry e2 WHERE e2.account_id = a.id) "
            "FROM ledger_account a WHERE a.id IN "
            "(SELECT e.account_id FROM ledger_entry e WHERE e.transaction_id = %s) ORDER BY a.id",
            [transaction_id],
        )
        return [AccountSnapshot(pk, code, balance, through or 0) for pk, code, balance, through in cursor.fetchall()]


def balances_through(through_entry_ids: dict[int, int]) -> dict[int, int]:
    """Each account's balance (µk) including its entries up to the given entry
    id: the cached balance minus the (few, recent) entries after it."""
    if not through_entry_ids:
        return {}
    balances = dict(Account.objects.filter(pk__in=through_entry_ids).values_list("pk", "balance_uk"))
    later: dict[int, int] = {}
    ids = list(through_entry_ids)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        low = min(through_entry_ids[pk] for pk in chunk)
        rows = Entry.objects.filter(account_id__in=chunk, id__gt=low).values_list("account_id", "id", "amount_uk")
        for account_id, entry_id, amount_uk in rows.iterator(chunk_size=5000):
            if entry_id > through_entry_ids[account_id]:
                later[account_id] = later.get(account_id, 0) + amount_uk
    return {pk: balances[pk] - later.get(pk, 0) for pk in through_entry_ids if pk in balances}
