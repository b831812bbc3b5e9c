"""The double-entry ledger: accounts, transactions, entries (integer µk).

Append-only. Every transaction's entries sum to zero (checked in Python and by
a deferred PostgreSQL constraint trigger, migration 0002) and carries a unique
idempotency key. ``Account.balance_uk`` is a cache maintained in the same
database transaction as the entries, under row locks; the entries are the truth
(``manage.py ledger_check`` compares them).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AccountKind(models.TextChoices):
    WALLET = "wallet", "Resident wallet"
    METER = "meter", "Meter account"
    POOL = "pool", "Grid pool"
    FEE = "fee", "Utility fee account"
    FIAT_ISSUED = "fiat_issued", "Fiat issued (coins sold)"
    PAYOUTS_IN_FLIGHT = "payouts_in_flight", "Payouts in flight"
    OPERATOR_CREDIT = "operator_credit", "Operator-issued credit"
    # Coins the marketplace holds: standing bids, a won auction's payment, a
    # bilateral contract's deposit (one account per offer or contract).
    MARKET_ESCROW = "market_escrow", "Market escrow"


class Account(models.Model):
    """One balance. ``code`` is stable and readable, e.g. ``meter:demo:M-0001``."""

    code = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=24, choices=AccountKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    balance_uk = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner"], condition=models.Q(kind="wallet"), name="one_wallet_per_resident")
        ]

    def __str__(self) -> str:
        return self.code


class Transaction(models.Model):
    """A movement of money: entries that sum to zero, applied once per key."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=40)
    memo = models.CharField(max_length=500, blank=True)
    # sha256 over (kind, sorted entries): a reused key must carry the same content.
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.idempotency_key


class Entry(models.Model):
    """One leg of a transaction: ``amount_uk`` is added to the account's balance."""

    # Both lead a composite index below (entry_txn_id, entry_account_id): no
    # single-column index of their own, which would only slow every COPY.
    # Referential integrity is enforced by PostgreSQL per statement, not per
    # row (migration 0007: a settlement inserts 100,000 entries in one COPY,
    # and row-level foreign keys cost one check query per entry at commit).
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, related_name="entries", db_index=False, db_constraint=False
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", db_index=False, db_constraint=False
    )
    amount_uk = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "entries"
        indexes = [
            models.Index(fields=["transaction", "id"], name="entry_txn_id"),
            models.Index(fields=["account", "id"], name="entry_account_id"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_uk:+d} µk to account {self.account_id}"
