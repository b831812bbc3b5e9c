"""Operator-issued credit to resident wallets, and the resident helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from utility.audit.models import OperatorAction
from utility.ledger.models import Account, AccountKind, Transaction
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, wallet_ensure
from utility.ledger.tests.helpers import run_concurrently
from utility.residents.services import ResidentError, check_amount_uk, resident_get, wallet_credit

NOW = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
K = 1_000_000


def user(username: str = "bob", **fields):
    return get_user_model().objects.create_user(username=username, password="pw-not-secret-42", **fields)


def books() -> tuple:
    return (
        Transaction.objects.count(),
        list(Account.objects.order_by("code").values_list("code", "balance_uk")),
        OperatorAction.objects.count(),
    )


@pytest.mark.parametrize("amount", [1, 5 * K, 2**62])
def test_check_amount_accepts_positive_integers(amount):
    assert check_amount_uk(amount) == amount


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, "amount must be positive, got 0"),
        (-1, "amount must be positive, got -1"),
        (1.0, "whole number of µk, got 1.0"),
        ("5", "whole number of µk, got '5'"),
        (True, "whole number of µk, got True"),
        (None, "whole number of µk, got None"),
    ],
)
def test_check_amount_refuses_everything_else(amount, message):
    with pytest.raises(ResidentError, match=message):
        check_amount_uk(amount)


@pytest.mark.django_db
def test_resident_get_finds_only_active_residents():
    bob = user()
    user("gone", is_active=False)
    assert resident_get("bob") == bob
    for name in ("gone", "nobody", ""):
        with pytest.raises(ResidentError, match="no active resident named"):
            resident_get(name)


@pytest.mark.django_db
def test_wallet_credit_moves_operator_credit_into_the_wallet_and_records_who_and_why():
    bob = user()
    txn = wallet_credit("bob", 5 * K, "demo coins for the open day", "olga", "req-1", NOW)
    assert (txn.idempotency_key, txn.kind, txn.memo) == (
        "wallet_credit:req-1",
        "operator_credit",
        "olga: demo coins for the open day",
    )
    assert account_balance(wallet_ensure(bob).pk) == 5 * K
    assert account_balance(system_account(AccountKind.OPERATOR_CREDIT).pk) == -5 * K
    action = OperatorAction.objects.get()
    assert (action.actor, action.action, action.target, action.reason, action.at) == (
        "olga", "wallet_credit", "wallet:bob", "demo coins for the open day", NOW,
    )  # fmt: skip
    assert action.detail == {"amount_uk": 5 * K, "request_id": "req-1"}
    assert ledger_problems() == []


@pytest.mark.django_db
def test_wallet_credit_is_applied_once_per_request_id():
    bob = user()
    first = wallet_credit("bob", 5 * K, "why", "olga", "req-1", NOW)
    again = wallet_credit("bob", 5 * K, "why", "olga", "req-1", NOW)
    assert again.pk == first.pk
    assert account_balance(wallet_ensure(bob).pk) == 5 * K
    assert OperatorAction.objects.count() == 1  # the retry is not recorded as a second credit
    user("carol")
    before = books()
    for username, amount in [("bob", 6 * K), ("carol", 5 * K)]:
        with pytest.raises(ResidentError, match="already used for a different movement"):
            wallet_credit(username, amount, "why", "olga", "req-1", NOW)
    assert books() == before


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_credit_apply_it_once():
    bob = user()
    results = run_concurrently([lambda: wallet_credit("bob", K, "why", "olga", "same", NOW) for _ in range(8)])
    assert all(isinstance(r, Transaction) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert account_balance(wallet_ensure(bob).pk) == K
    assert OperatorAction.objects.count() == 1
    assert ledger_problems() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bob", 0, "why", "olga", "r"), "amount must be positive"),
        (("bob", -K, "why", "olga", "r"), "amount must be positive"),
        (("bob", 1.5, "why", "olga", "r"), "whole number of µk"),
        (("bob", K, "", "olga", "r"), "a reason is required"),
        (("bob", K, "  \n", "olga", "r"), "a reason is required"),
        (("bob", K, None, "olga", "r"), "a reason is required"),
        (("bob", K, "why", "", "r"), "the operator's name is required"),
        (("bob", K, "why", None, "r"), "the operator's name is required"),
        (("bob", K, "why", "olga", ""), "a request id is required"),
        (("nobody", K, "why", "olga", "r"), "no active resident named 'nobody'"),
        (("gone", K, "why", "olga", "r"), "no active resident named 'gone'"),
    ],
)
def test_wallet_credit_refuses_bad_input_and_writes_nothing(args, message):
    user()
    user("gone", is_active=False)
    before = books()
    with pytest.raises(ResidentError, match=message):
        wallet_credit(*args, NOW)
    assert books() == before
