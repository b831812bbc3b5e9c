"""PostgreSQL guards the books even against code that bypasses the services.

These tests write with raw SQL and the ORM, around ``transaction_post``, and
need real commits (the zero-sum trigger is deferred to commit time).
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from utility.ledger.models import Entry, Transaction
from utility.ledger.services import transaction_post

from .helpers import accounts_make, balances


@pytest.fixture(autouse=True)
def _postgresql_only():
    # The triggers exist only on PostgreSQL; say so loudly rather than skip.
    if connection.vendor != "postgresql":
        pytest.fail("the ledger triggers live in PostgreSQL: run with DATABASE_URL=postgres://...")


def _raw_transaction(key: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_transaction (idempotency_key, kind, memo, content_hash, created_at) "
            "VALUES (%s, 'raw', '', '', now()) RETURNING id",
            [key],
        )
        return cursor.fetchone()[0]


def _raw_entry(transaction_id: int, account_id: int, amount_uk: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_entry (transaction_id, account_id, amount_uk) VALUES (%s, %s, %s)",
            [transaction_id, account_id, amount_uk],
        )


@pytest.mark.django_db(transaction=True)
def test_raw_sql_entries_that_do_not_sum_to_zero_are_refused_at_commit():
    alice, bob = accounts_make("alice", "bob")

    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        txn_id = _raw_transaction("raw-1")
        _raw_entry(txn_id, alice.pk, -100)
        _raw_entry(txn_id, bob.pk, 99)
        # Deferred: inside the transaction nothing complains yet.
        assert Entry.objects.filter(transaction_id=txn_id).count() == 2

    assert not Transaction.objects.exists()
    assert not Entry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_orm_bulk_create_bypassing_the_service_is_refused_at_commit():
    alice, bob = accounts_make("alice", "bob")

    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        txn = Transaction.objects.create(idempotency_key="orm-1", kind="orm", content_hash="")
        Entry.objects.bulk_create(
            [Entry(transaction=txn, account=alice, amount_uk=-5), Entry(transaction=txn, account=bob, amount_uk=4)]
        )

    assert not Transaction.objects.exists()
    assert not Entry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_adding_an_entry_to_a_committed_transaction_is_refused_at_commit():
    alice, bob = accounts_make("alice", "bob")
    posted = transaction_post("t-1", "test", [(alice.pk, -100), (bob.pk, 100)])

    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        _raw_entry(posted.transaction.pk, alice.pk, 50)

    assert Entry.objects.count() == 2
    assert balances(alice, bob) == [-100, 100]


@pytest.mark.django_db(transaction=True)
def test_balanced_raw_entries_and_service_posts_commit():
    alice, bob, carol = accounts_make("alice", "bob", "carol")

    with transaction.atomic():
        txn_id = _raw_transaction("raw-ok")
        _raw_entry(txn_id, alice.pk, -100)
        _raw_entry(txn_id, bob.pk, 60)
        _raw_entry(txn_id, carol.pk, 40)
    transaction_post("t-1", "test", [(alice.pk, -7), (bob.pk, 7)])

    assert Transaction.objects.count() == 2
    assert Entry.objects.count() == 5


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entry SET amount_uk = amount_uk + 1",
        "DELETE FROM ledger_entry",
        "UPDATE ledger_transaction SET memo = 'edited'",
        "DELETE FROM ledger_transaction",
    ],
    ids=["update-entry", "delete-entry", "update-transaction", "delete-transaction"],
)
def test_entries_and_transactions_are_append_only(statement):
    alice, bob = accounts_make("alice", "bob")
    posted = transaction_post("t-1", "test", [(alice.pk, -100), (bob.pk, 100)], memo="original")

    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)

    posted.transaction.refresh_from_db()
    assert posted.transaction.memo == "original"
    assert sorted(Entry.objects.values_list("amount_uk", flat=True)) == [-100, 100]


@pytest.mark.django_db
def test_the_orm_cannot_edit_or_delete_entries_either():
    alice, bob = accounts_make("alice", "bob")
    posted = transaction_post("t-1", "test", [(alice.pk, -100), (bob.pk, 100)])
    entry = posted.transaction.entries.first()

    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        Entry.objects.filter(pk=entry.pk).update(amount_uk=0)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        Entry.objects.filter(pk=entry.pk).delete()

    assert Entry.objects.get(pk=entry.pk).amount_uk == entry.amount_uk
