"""The zero-sum check queued once per statement (migration 0003) keeps the
guarantee of the per-entry trigger it replaced: every database transaction
that adds entries to a ledger transaction has that transaction's whole sum
checked at its commit, however the entries got there.

These need real commits (the check is deferred), so every test is transactional.
"""

from __future__ import annotations

import io

import pytest
from django.db import IntegrityError, connection, transaction

from utility.ledger.models import Entry, Transaction
from utility.ledger.services import transaction_post

from .helpers import accounts_make, balances

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.fail("the ledger's zero-sum check lives in PostgreSQL: run with DATABASE_URL=postgres://...")


def _new_transaction(key: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_transaction (idempotency_key, kind, memo, content_hash, created_at) "
            "VALUES (%s, 'raw', '', '', now()) RETURNING id",
            [key],
        )
        return cursor.fetchone()[0]


def _entries(rows: list[tuple[int, int, int]]) -> None:
    """Insert ``(transaction_id, account_id, amount_uk)`` rows in ONE statement."""
    with connection.cursor() as cursor:
        values = ", ".join(["(%s, %s, %s)"] * len(rows))
        cursor.execute(
            f"INSERT INTO ledger_entry (transaction_id, account_id, amount_uk) VALUES {values}",
            [value for row in rows for value in row],
        )


def _pending_checks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_balance_check")
        return cursor.fetchone()[0]


def test_an_unbalanced_copy_is_refused_at_commit():
    alice, bob = accounts_make("alice", "bob")

    with pytest.raises(IntegrityError, match="does not balance: its entries sum to -1 uk"), transaction.atomic():
        txn_id = _new_transaction("copy-1")
        rows = "".join(f"{txn_id}\t{alice.pk if i % 2 else bob.pk}\t{1 if i % 2 else -1}\n" for i in range(1_001))
        copy = "COPY ledger_entry (transaction_id, account_id, amount_uk) FROM STDIN"
        with connection.cursor() as cursor:
            cursor.copy_expert(copy, io.StringIO(rows))

    assert not Entry.objects.exists()


def test_one_statement_for_two_transactions_names_the_unbalanced_one():
    alice, bob = accounts_make("alice", "bob")

    with pytest.raises(IntegrityError, match="does not balance") as refused, transaction.atomic():
        good, bad = _new_transaction("good"), _new_transaction("bad")
        _entries([(good, alice.pk, -5), (good, bob.pk, 5), (bad, alice.pk, -5), (bad, bob.pk, 4)])

    assert f"ledger transaction {bad} " in str(refused.value)
    assert not Transaction.objects.exists()


def test_entries_from_several_statements_are_summed_together_at_commit():
    alice, bob, carol = accounts_make("alice", "bob", "carol")

    with transaction.atomic():
        txn_id = _new_transaction("split")
        _entries([(txn_id, alice.pk, -10)])
        _entries([(txn_id, bob.pk, 4)])
        _entries([(txn_id, carol.pk, 6)])

    assert Entry.objects.filter(transaction_id=txn_id).count() == 3
    assert _pending_checks() == 0


def test_entries_added_after_an_early_check_are_checked_again_at_commit():
    alice, bob = accounts_make("alice", "bob")

    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        txn_id = _new_transaction("early")
        _entries([(txn_id, alice.pk, -10), (txn_id, bob.pk, 10)])
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the pending check runs now, and passes
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        _entries([(txn_id, alice.pk, 1)])

    assert not Entry.objects.exists()


def test_a_rolled_back_savepoint_takes_its_entries_and_their_check_with_it():
    alice, bob = accounts_make("alice", "bob")

    with transaction.atomic():
        txn_id = _new_transaction("outer")
        _entries([(txn_id, alice.pk, -3), (txn_id, bob.pk, 3)])
        with pytest.raises(RuntimeError), transaction.atomic():
            _entries([(txn_id, alice.pk, 1)])
            raise RuntimeError("roll the savepoint back")

    assert sorted(Entry.objects.values_list("amount_uk", flat=True)) == [-3, 3]
    assert _pending_checks() == 0


def test_the_service_leaves_no_pending_check_behind():
    alice, bob = accounts_make("alice", "bob")
    legs = [(alice.pk, -1), (bob.pk, 1)] * 400  # 800 legs: the COPY path

    transaction_post("big", "test", legs)
    transaction_post("small", "test", [(alice.pk, -7), (bob.pk, 7)])

    assert _pending_checks() == 0
    assert balances(alice, bob) == [-407, 407]
