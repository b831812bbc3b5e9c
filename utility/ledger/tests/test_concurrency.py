"""Concurrent posts from threads, each with its own connection and commits."""

from __future__ import annotations

import pytest

from utility.ledger.models import Transaction
from utility.ledger.selectors import ledger_problems
from utility.ledger.services import InsufficientFunds, Posted, transaction_post

from .helpers import accounts_make, balances, run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_concurrent_debits_against_a_floor_that_covers_five_give_exactly_five():
    wallet, shop = accounts_make("wallet", "shop")
    transaction_post("seed", "test", [(shop.pk, -500), (wallet.pk, 500)])

    def spend(n: int):
        legs = [(wallet.pk, -100), (shop.pk, 100)]
        return lambda: transaction_post(f"spend-{n}", "spend", legs, floors_uk={wallet.pk: 0})

    results = run_concurrently([spend(n) for n in range(20)])

    assert sum(isinstance(r, Posted) for r in results) == 5, results
    assert sum(isinstance(r, InsufficientFunds) for r in results) == 15, results
    assert balances(wallet, shop) == [0, 0]
    assert Transaction.objects.filter(kind="spend").count() == 5
    assert ledger_problems() == []


def test_the_same_key_posted_from_several_threads_creates_one_transaction():
    alice, bob = accounts_make("alice", "bob")

    def post():
        return transaction_post("stripe:evt_42", "topup", [(alice.pk, -1_000), (bob.pk, 1_000)])

    results = run_concurrently([post for _ in range(8)])

    assert all(isinstance(r, Posted) for r in results), results
    assert sum(r.created for r in results) == 1
    assert len({r.transaction.pk for r in results}) == 1
    assert Transaction.objects.count() == 1
    assert balances(alice, bob) == [-1_000, 1_000]
    assert ledger_problems() == []


def test_crossing_transfers_in_opposite_directions_do_not_deadlock():
    # Accounts are locked in id order, so A→B and B→A never wait on each other.
    alice, bob = accounts_make("alice", "bob")

    def transfer(n: int):
        source, target = (alice, bob) if n % 2 else (bob, alice)
        return lambda: transaction_post(f"x-{n}", "transfer", [(source.pk, -10), (target.pk, 10)])

    results = run_concurrently([transfer(n) for n in range(12)])

    assert all(isinstance(r, Posted) and r.created for r in results), results
    assert balances(alice, bob) == [0, 0]
    assert ledger_problems() == []
