"""``ledger_problems`` and the balance reads."""

from __future__ import annotations

import pytest
from django.db import connection

from utility.ledger.selectors import account_balance, account_balance_from_entries, ledger_problems
from utility.ledger.services import transaction_post

from .helpers import accounts_make

pytestmark = pytest.mark.django_db


def _post_some() -> tuple:
    alice, bob, pool = accounts_make("alice", "bob", "pool")
    transaction_post("t-1", "test", [(alice.pk, -3_000_000), (bob.pk, -2_000_000), (pool.pk, 5_000_000)])
    transaction_post("t-2", "test", [(pool.pk, -4_990_000), (alice.pk, 2_721_818), (bob.pk, 2_268_182)])
    return alice, bob, pool


def test_no_problems_after_normal_posts_and_balances_match_entries():
    alice, bob, pool = _post_some()

    assert ledger_problems() == []
    for account in (alice, bob, pool):
        assert account_balance(account.pk) == account_balance_from_entries(account.pk)
    assert account_balance(pool.pk) == 10_000


def test_no_problems_on_an_empty_ledger():
    assert ledger_problems() == []


def test_a_tampered_cached_balance_is_named():
    alice, _, _ = _post_some()
    with connection.cursor() as cursor:
        # The cache is not append-only (it is maintained by UPDATE), so a
        # tamperer can write it; the entries still tell the truth.
        cursor.execute("UPDATE ledger_account SET balance_uk = balance_uk + 7 WHERE id = %s", [alice.pk])

    problems = ledger_problems()

    assert {p.what for p in problems} == {"balance_mismatch", "global_balance"}
    mismatch = next(p for p in problems if p.what == "balance_mismatch")
    assert "test:alice" in mismatch.detail
    assert "cached -278175" in mismatch.detail
    assert "entries say -278182" in mismatch.detail


def test_two_compensating_tampers_keep_the_global_sum_but_name_both_accounts():
    alice, bob, _ = _post_some()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_account SET balance_uk = balance_uk + 1 WHERE id = %s", [alice.pk])
        cursor.execute("UPDATE ledger_account SET balance_uk = balance_uk - 1 WHERE id = %s", [bob.pk])

    problems = ledger_problems()

    assert [p.what for p in problems] == ["balance_mismatch", "balance_mismatch"]
    assert ["test:alice" in problems[0].detail, "test:bob" in problems[1].detail] == [True, True]
