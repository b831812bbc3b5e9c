"""Entries always name an account and a ledger transaction that exist.

The foreign keys of ``ledger_entry`` are checked once per statement by
PostgreSQL triggers (migration 0007), not per row: these tests go around the
services with raw SQL, COPY and the ORM to show the database still refuses a
dangling entry, a deleted account and a changed account id.
"""

from __future__ import annotations

import io

import pytest
from django.db import IntegrityError, connection, transaction
from psycopg2.errors import ForeignKeyViolation

from utility.ledger.models import Account, Entry, Transaction
from utility.ledger.selectors import ledger_problems
from utility.ledger.services import transaction_post

from .helpers import accounts_make

MISSING_ID = 987_654_321


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.fail("the reference triggers live in PostgreSQL: run with DATABASE_URL=postgres://...")


def _raw_transaction(key: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_transaction (idempotency_key, kind, memo, content_hash, created_at) "
            "VALUES (%s, 'raw', '', '', now()) RETURNING id",
            [key],
        )
        return cursor.fetchone()[0]


def _copy_entries(rows: list[tuple[int, int, int]]) -> None:
    data = io.StringIO("".join(f"{t}\t{a}\t{amount}\n" for t, a, amount in rows))
    with connection.cursor() as cursor:
        cursor.copy_expert("COPY ledger_entry (transaction_id, account_id, amount_uk) FROM STDIN", data)


@pytest.mark.django_db(transaction=True)
def test_an_entry_naming_a_missing_account_is_refused():
    (alice,) = accounts_make("alice")
    refused = rf'"ledger_account": account_id = {MISSING_ID} does not exist'
    with pytest.raises(ForeignKeyViolation, match=refused), transaction.atomic():
        txn_id = _raw_transaction("raw-missing-account")
        _copy_entries([(txn_id, alice.pk, -5), (txn_id, MISSING_ID, 5)])
    assert not Entry.objects.exists()
    assert not Transaction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_one_bad_row_refuses_the_whole_copy():
    accounts = accounts_make(*(f"a{i}" for i in range(50)))
    with pytest.raises(ForeignKeyViolation, match="does not exist"), transaction.atomic():
        txn_id = _raw_transaction("raw-copy")
        rows = [(txn_id, account.pk, 1 if i % 2 else -1) for i, account in enumerate(accounts)]
        rows[37] = (txn_id, MISSING_ID, rows[37][2])
        _copy_entries(rows)
    assert not Entry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_entry_naming_a_missing_ledger_transaction_is_refused():
    alice, bob = accounts_make("alice", "bob")
    refused = rf'"ledger_transaction": transaction_id = {MISSING_ID} does not exist'
    with pytest.raises(IntegrityError, match=refused), transaction.atomic():
        Entry.objects.bulk_create(
            [
                Entry(transaction_id=MISSING_ID, account=alice, amount_uk=-3),
                Entry(transaction_id=MISSING_ID, account=bob, amount_uk=3),
            ]
        )
    assert not Entry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ledger_accounts_are_permanent_and_keep_their_id():
    alice, bob = accounts_make("alice", "bob")
    transaction_post("pay-1", "test", [(alice.pk, -10), (bob.pk, 10)])
    (carol,) = accounts_make("carol")  # no entries: still permanent

    for account in (alice, carol):
        refused = pytest.raises(IntegrityError, match="ledger accounts are permanent")
        with refused, transaction.atomic(), connection.cursor() as cursor:  # raw SQL: around the ORM's PROTECT
            cursor.execute("DELETE FROM ledger_account WHERE id = %s", [account.pk])
    with pytest.raises(IntegrityError, match="never changes"), transaction.atomic():
        Account.objects.filter(pk=alice.pk).update(id=MISSING_ID)
    assert Account.objects.count() == 3
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_the_services_still_post_and_balance_updates_do_not_trip_the_key_guard():
    alice, bob = accounts_make("alice", "bob")
    posted = transaction_post("pay-2", "test", [(alice.pk, -7), (bob.pk, 7)])
    assert posted.transaction.entries.count() == 2
    alice.refresh_from_db()
    assert alice.balance_uk == -7
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_ledger_check_reports_a_dangling_entry_slipped_past_the_triggers():
    # Only a superuser switching the trigger off can do this; ledger_check
    # must still see it.
    (alice,) = accounts_make("alice")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_account_exists")
        txn_id = _raw_transaction("raw-dangling")
        _copy_entries([(txn_id, alice.pk, -5), (txn_id, MISSING_ID, 5)])
        cursor.execute("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_account_exists")
    kinds = {problem.what for problem in ledger_problems()}
    assert "dangling_entry" in kinds
