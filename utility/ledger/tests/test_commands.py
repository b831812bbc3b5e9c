"""``manage.py ledger_check``."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from utility.ledger.services import transaction_post

from .helpers import accounts_make

pytestmark = pytest.mark.django_db


def _check(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ledger_check", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _books() -> tuple:
    alice, bob, pool = accounts_make("alice", "bob", "pool")
    transaction_post("t-1", "test", [(alice.pk, -3_000), (pool.pk, 3_000)])
    transaction_post("t-2", "test", [(pool.pk, -3_000), (bob.pk, 3_000)])
    return alice, bob, pool


def test_ok_with_counts():
    _books()

    out, err = _check()

    assert out.startswith("OK: 2 transactions, 4 entries and 3 accounts")
    assert err == ""


def test_ok_as_json():
    _books()

    out, _ = _check("--json")

    assert json.loads(out) == {"ok": True, "accounts": 3, "transactions": 2, "entries": 4, "problems": []}


def test_an_empty_ledger_is_ok():
    out, _ = _check()

    assert out.startswith("OK: 0 transactions")


def test_a_tampered_balance_is_named_and_exits_non_zero():
    alice, _, _ = _books()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_account SET balance_uk = 42 WHERE id = %s", [alice.pk])
    err = StringIO()

    with pytest.raises(CommandError, match="2 problem"):
        call_command("ledger_check", stdout=StringIO(), stderr=err)

    assert "balance_mismatch: test:alice: cached 42 µk, entries say -3000 µk" in err.getvalue()
    assert "global_balance: all balances sum to 3042 µk" in err.getvalue()


def test_a_tampered_balance_in_json_and_exits_non_zero():
    alice, _, _ = _books()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_account SET balance_uk = 42 WHERE id = %s", [alice.pk])
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("ledger_check", "--json", stdout=out, stderr=StringIO())

    report = json.loads(out.getvalue())
    assert report["ok"] is False
    assert {p["what"] for p in report["problems"]} == {"balance_mismatch", "global_balance"}


def test_an_unbalanced_transaction_is_named():
    # Only reachable by bypassing the service and the deferred trigger (which
    # fires at a commit that this test never makes): the check must still see it.
    alice, bob, _ = _books()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_transaction (idempotency_key, kind, memo, content_hash, created_at) "
            "VALUES ('raw', 'raw', '', '', now()) RETURNING id"
        )
        (txn_id,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO ledger_entry (transaction_id, account_id, amount_uk) VALUES (%s, %s, 5)", [txn_id, bob.pk]
        )
    err = StringIO()

    with pytest.raises(CommandError):
        call_command("ledger_check", stdout=StringIO(), stderr=err)

    assert f"unbalanced_transaction: transaction {txn_id} sums to 5 µk" in err.getvalue()
    assert "global_sum: all entries sum to 5 µk" in err.getvalue()
    with connection.cursor() as cursor:
        # Balance it again, or the trigger rightly fails the test's teardown
        # (pytest-django checks deferred constraints before rolling back).
        cursor.execute(
            "INSERT INTO ledger_entry (transaction_id, account_id, amount_uk) VALUES (%s, %s, -5)", [txn_id, alice.pk]
        )


def test_help_describes_the_checks(capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("ledger_check", "--help")

    assert exited.value.code == 0
    assert "every transaction's entries sum to zero" in capsys.readouterr().out


def test_an_unknown_option_is_refused():
    with pytest.raises(CommandError, match="unrecognized arguments"):
        call_command("ledger_check", "--jsn")
