"""``transaction_post`` on the real database: balances, refusals, idempotency."""

from __future__ import annotations

import pytest
from django.db import transaction

from utility.ledger.models import Entry, Transaction
from utility.ledger.selectors import account_balance_from_entries, ledger_problems
from utility.ledger.services import (
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    UnbalancedTransaction,
    transaction_post,
)

from .helpers import accounts_make, balances

pytestmark = pytest.mark.django_db


def test_a_balanced_post_moves_the_cached_balances():
    alice, bob, pool = accounts_make("alice", "bob", "pool")

    posted = transaction_post("t-1", "test", [(alice.pk, -3_000_000), (bob.pk, -2_000_000), (pool.pk, 5_000_000)])

    assert posted.created is True
    assert balances(alice, bob, pool) == [-3_000_000, -2_000_000, 5_000_000]
    assert posted.transaction.entries.count() == 3
    assert account_balance_from_entries(pool.pk) == 5_000_000
    assert ledger_problems() == []


def test_several_legs_on_one_account_add_up():
    alice, bob = accounts_make("alice", "bob")

    transaction_post("t-1", "test", [(alice.pk, -700), (alice.pk, -300), (bob.pk, 1_000)])

    assert balances(alice, bob) == [-1_000, 1_000]
    assert Entry.objects.filter(account=alice).count() == 2


@pytest.mark.parametrize(
    "legs_of",
    [
        lambda a, b: [(a, -100), (b, 99)],
        lambda a, b: [(a, 1)],
        lambda a, b: [],
    ],
    ids=["off-by-one", "single-leg", "no-legs"],
)
def test_an_unbalanced_movement_is_refused_in_python_and_writes_nothing(legs_of):
    alice, bob = accounts_make("alice", "bob")

    with pytest.raises(UnbalancedTransaction):
        transaction_post("t-bad", "test", legs_of(alice.pk, bob.pk))

    assert not Transaction.objects.exists()
    assert not Entry.objects.exists()
    assert balances(alice, bob) == [0, 0]


@pytest.mark.parametrize(
    ("key", "kind", "legs_of", "message"),
    [
        ("", "test", lambda a, b: [(a, -1), (b, 1)], "idempotency key"),
        ("k" * 201, "test", lambda a, b: [(a, -1), (b, 1)], "idempotency key"),
        ("t-1", "", lambda a, b: [(a, -1), (b, 1)], "kind"),
        ("t-1", "test", lambda a, b: [(a, -1.0), (b, 1.0)], "integers"),
        ("t-1", "test", lambda a, b: [(a, -1), (b, True)], "integers"),
        ("t-1", "test", lambda a, b: [(a, -1), (10**9, 1)], "unknown account"),
    ],
    ids=["empty-key", "long-key", "no-kind", "float", "bool", "unknown-account"],
)
def test_malformed_movements_are_refused_and_write_nothing(key, kind, legs_of, message):
    alice, bob = accounts_make("alice", "bob")

    with pytest.raises(LedgerError, match=message):
        transaction_post(key, kind, legs_of(alice.pk, bob.pk))

    assert not Transaction.objects.exists()
    assert not Entry.objects.exists()
    assert balances(alice, bob) == [0, 0]


def test_the_same_key_and_content_returns_the_original_and_changes_nothing():
    alice, bob = accounts_make("alice", "bob")
    first = transaction_post("stripe:evt_1", "topup", [(alice.pk, -500), (bob.pk, 500)])

    # Legs in another order are the same content.
    again = transaction_post("stripe:evt_1", "topup", [(bob.pk, 500), (alice.pk, -500)], memo="retried")

    assert again.created is False
    assert again.transaction.pk == first.transaction.pk
    assert balances(alice, bob) == [-500, 500]
    assert Transaction.objects.count() == 1
    assert Entry.objects.count() == 2


@pytest.mark.parametrize(
    ("kind", "legs_of"),
    [
        ("topup", lambda a, b: [(a, -501), (b, 501)]),
        ("topup", lambda a, b: [(a, 500), (b, -500)]),
        ("refund", lambda a, b: [(a, -500), (b, 500)]),
    ],
    ids=["other-amount", "other-direction", "other-kind"],
)
def test_the_same_key_with_other_content_is_a_conflict_and_changes_nothing(kind, legs_of):
    alice, bob = accounts_make("alice", "bob")
    transaction_post("stripe:evt_1", "topup", [(alice.pk, -500), (bob.pk, 500)])

    with pytest.raises(IdempotencyConflict, match="stripe:evt_1"):
        transaction_post("stripe:evt_1", kind, legs_of(alice.pk, bob.pk))

    assert balances(alice, bob) == [-500, 500]
    assert Transaction.objects.count() == 1
    assert Entry.objects.count() == 2


def test_a_floor_refuses_an_overdraft_and_writes_nothing():
    wallet, meter = accounts_make("wallet", "meter")
    transaction_post("seed", "test", [(meter.pk, -1_000), (wallet.pk, 1_000)])

    with pytest.raises(InsufficientFunds) as refused:
        transaction_post("fund", "fund", [(wallet.pk, -1_001), (meter.pk, 1_001)], floors_uk={wallet.pk: 0})

    assert refused.value.account == "test:wallet"
    assert refused.value.balance_uk == 1_000
    assert refused.value.needed_uk == 1_001
    assert balances(wallet, meter) == [1_000, -1_000]
    assert not Transaction.objects.filter(idempotency_key="fund").exists()
    assert Entry.objects.count() == 2


def test_a_floor_allows_reaching_it_exactly_and_a_negative_floor_allows_credit():
    wallet, meter, pool = accounts_make("wallet", "meter", "pool")
    transaction_post("seed", "test", [(pool.pk, -1_000), (wallet.pk, 1_000)])

    transaction_post("fund", "fund", [(wallet.pk, -1_000), (meter.pk, 1_000)], floors_uk={wallet.pk: 0})
    # A meter within its credit limit of 2,000 µk may go below zero.
    transaction_post("use", "use", [(meter.pk, -3_000), (pool.pk, 3_000)], floors_uk={meter.pk: -2_000})

    assert balances(wallet, meter, pool) == [0, -2_000, 2_000]
    with pytest.raises(InsufficientFunds):
        transaction_post("use-2", "use", [(meter.pk, -1), (pool.pk, 1)], floors_uk={meter.pk: -2_000})
    assert balances(wallet, meter, pool) == [0, -2_000, 2_000]


def test_a_refusal_inside_an_outer_transaction_leaves_the_outer_work_alone():
    wallet, meter = accounts_make("wallet", "meter")

    with transaction.atomic():
        transaction_post("ok", "test", [(meter.pk, -10), (wallet.pk, 10)])
        with pytest.raises(InsufficientFunds):
            transaction_post("too-much", "test", [(wallet.pk, -11), (meter.pk, 11)], floors_uk={wallet.pk: 0})

    assert balances(wallet, meter) == [10, -10]
    assert list(Transaction.objects.values_list("idempotency_key", flat=True)) == ["ok"]


def test_a_credit_is_never_refused_by_a_floor_even_below_it():
    # Settlement may leave a meter past its credit limit; a top-up must still land.
    meter, pool, wallet = accounts_make("meter", "pool", "wallet")
    transaction_post("used", "settlement", [(meter.pk, -5_000), (pool.pk, 5_000)])

    transaction_post(
        "topup", "fund", [(pool.pk, -1_000), (meter.pk, 1_000)], floors_uk={meter.pk: -2_000, wallet.pk: 0}
    )

    assert balances(meter, pool, wallet) == [-4_000, 4_000, 0]
