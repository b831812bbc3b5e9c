"""Writes to the ledger. Every movement goes through ``transaction_post``."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction

from .models import Account, AccountKind, Entry, Transaction

# Above this many entries PostgreSQL gets them by COPY (about 6x bulk_create).
COPY_THRESHOLD = 500


class LedgerError(Exception):
    """A movement that the ledger refuses; nothing was written."""


class UnbalancedTransaction(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    """The key was used before for a different movement."""


class InsufficientFunds(LedgerError):
    def __init__(self, account: str, balance_uk: int, needed_uk: int) -> None:
        super().__init__(f"{account} holds {balance_uk} µk, {needed_uk} µk needed")
        self.account = account
        self.balance_uk = balance_uk
        self.needed_uk = needed_uk


@dataclass(frozen=True, slots=True)
class Posted:
    transaction: Transaction
    created: bool


def _content_hash(kind: str, legs: Sequence[tuple[int, int]]) -> str:
    digest = hashlib.sha256(kind.encode())
    for account_id, amount_uk in sorted(legs):
        digest.update(b"|%d:%d" % (account_id, amount_uk))
    return digest.hexdigest()


def _validate(key: str, kind: str, legs: Sequence[tuple[int, int]]) -> None:
    if not key or len(key) > 200:
        raise LedgerError("an idempotency key of 1 to 200 characters is required")
    if not kind:
        raise LedgerError("a transaction kind is required")
    if not legs:
        raise UnbalancedTransaction("a transaction needs at least one entry")
    for account_id, amount_uk in legs:
        if type(amount_uk) is not int or type(account_id) is not int:
            raise LedgerError("account ids and amounts must be integers (µk)")
    total = sum(amount for _, amount in legs)
    if total != 0:
        raise UnbalancedTransaction(f"entries sum to {total} µk, not zero")


def transaction_post(
    key: str,
    kind: str,
    legs: Sequence[tuple[int, int]],
    memo: str = "",
    floors_uk: Mapping[int, int] | None = None,
) -> Posted:
    """Post one balanced movement, once per ``key``.

    ``legs`` are ``(account_id, amount_uk)``; amounts are added to balances and
    must sum to zero. ``floors_uk`` maps an account id to the lowest balance it
    may reach (checked under the row lock, so concurrent posts cannot overdraw).
    Reposting a key with the same content returns the original transaction
    (``created=False``); with different content raises ``IdempotencyConflict``.
    """
    _validate(key, kind, legs)
    content_hash = _content_hash(kind, legs)
    with transaction.atomic():
        try:
            with transaction.atomic():
                txn = Transaction.objects.create(
                    idempotency_key=key, kind=kind, memo=memo[:500], content_hash=content_hash
                )
        except IntegrityError:
            existing = Transaction.objects.get(idempotency_key=key)
            if existing.content_hash != content_hash:
                raise IdempotencyConflict(f"key {key!r} was already used for a different movement") from None
            return Posted(existing, created=False)
        deltas: dict[int, int] = {}
        for account_id, amount_uk in legs:
            deltas[account_id] = deltas.get(account_id, 0) + amount_uk
        _check_floors(_lock_accounts(sorted(deltas)), deltas, floors_uk or {})
        _write_entries(txn.pk, legs)
        _apply_deltas(deltas)
    return Posted(txn, created=True)


def _lock_accounts(account_ids: list[int]) -> dict[int, int]:
    """Lock the rows in id order (one global order, so no deadlocks) and return
    their balances (µk). The lock is taken before any entry is written, so the
    entries get ids above every entry committed earlier on these accounts.

    ``FOR NO KEY UPDATE`` is the lock the balance UPDATE takes anyway: it
    serialises balance writers without blocking the foreign-key checks of
    other transactions' entries. On PostgreSQL the ids travel as one array
    literal: a 100,000-row settlement would otherwise send 100,000 parameters.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, balance_uk FROM ledger_account WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE",
                [_pg_array(account_ids)],
            )
            locked = dict(cursor.fetchall())
    else:
        rows = Account.objects.select_for_update().filter(pk__in=account_ids).order_by("pk")
        locked = dict(rows.values_list("pk", "balance_uk"))
    if len(locked) != len(account_ids):
        missing = set(account_ids) - set(locked)
        raise LedgerError(f"unknown account ids: {sorted(missing)[:5]}")
    return locked


def _pg_array(values: Sequence[int]) -> str:
    """``{1,2,3}``: a PostgreSQL array literal of integers, for ``%s::bigint[]``."""
    return "{" + ",".join(map(str, values)) + "}"


def _check_floors(locked: dict[int, int], deltas: dict[int, int], floors: Mapping[int, int]) -> None:
    for account_id, floor_uk in floors.items():
        delta_uk = deltas.get(account_id, 0)
        # Only a debit can break a floor: an account this movement does not
        # touch, or credits (a top-up paying off debt past the limit), passes.
        if delta_uk >= 0:
            continue
        balance_uk = locked[account_id]
        if balance_uk + delta_uk < floor_uk:
            code = Account.objects.values_list("code", flat=True).get(pk=account_id)
            raise InsufficientFunds(code, balance_uk - floor_uk, -delta_uk)


def _write_entries(transaction_id: int, legs: Sequence[tuple[int, int]]) -> None:
    if connection.vendor == "postgresql" and len(legs) > COPY_THRESHOLD:
        buffer = io.StringIO("".join(f"{transaction_id}\t{a}\t{m}\n" for a, m in legs))
        with connection.cursor() as cursor:
            cursor.copy_expert("COPY ledger_entry (transaction_id, account_id, amount_uk) FROM STDIN", buffer)
        return
    Entry.objects.bulk_create(
        [Entry(transaction_id=transaction_id, account_id=a, amount_uk=m) for a, m in legs], batch_size=2000
    )


def _apply_deltas(deltas: dict[int, int]) -> None:
    """Add each delta to its (already locked) account's cached balance."""
    changed = sorted((pk, delta) for pk, delta in deltas.items() if delta)
    if not changed:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement; the arrays as two literals (see _lock_accounts).
            cursor.execute(
                "UPDATE ledger_account a SET balance_uk = a.balance_uk + d.delta "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, delta) WHERE a.id = d.id",
                [_pg_array([pk for pk, _ in changed]), _pg_array([delta for _, delta in changed])],
            )
        else:
            cursor.executemany(
                "UPDATE ledger_account SET balance_uk = balance_uk + %s WHERE id = %s",
                [(delta, pk) for pk, delta in changed],
            )


def account_ensure(code: str, kind: str, owner: AbstractBaseUser | None = None) -> Account:
    """The account with ``code``, created on first use (safe under concurrency)."""
    if kind not in AccountKind.values:
        raise LedgerError(f"unknown account kind {kind!r}")
    account, _ = Account.objects.get_or_create(code=code, defaults={"kind": kind, "owner": owner})
    if account.kind != kind:
        raise LedgerError(f"account {code} exists with kind {account.kind}, not {kind}")
    return account


def wallet_ensure(user: AbstractBaseUser) -> Account:
    """The resident's coin wallet (one per resident)."""
    return account_ensure(f"wallet:{user.get_username()}", AccountKind.WALLET, owner=user)


def system_account(kind: str) -> Account:
    """The platform-wide accounts: fiat issued, payouts in flight, operator credit."""
    return account_ensure(kind, kind)
