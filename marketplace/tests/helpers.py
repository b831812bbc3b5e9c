"""Test helpers: a small grid with two producers and two consumers, each
owned by a resident, and coins for their wallets (operator credit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from meters.models import Grid, Meter
from meters.tests.factories import HOUR, T0, grid_make, meter_make, user_make
from utility.ledger.models import Account, AccountKind
from utility.ledger.selectors import account_balance
from utility.ledger.services import system_account, transaction_post, wallet_ensure

K = 1_000_000  # µk per coin
NOW = T0 + timedelta(minutes=10)  # ten minutes into the grid's first interval


@dataclass
class Market:
    grid: Grid
    users: dict
    meters: dict[str, Meter]


def market_make(slug: str = "mkt") -> Market:
    """Angel and Bennie produce, Carlos and Danny consume; each owns one meter."""
    grid = grid_make(slug)
    users, meters = {}, {}
    for name, kind in [("angel", "producer"), ("bennie", "producer"), ("carlos", "consumer"), ("danny", "consumer")]:
        users[name] = user_make(f"{slug}-{name}")
        meters[name] = meter_make(grid, f"{slug}-{name}", kind, owner=users[name])
    return Market(grid, users, meters)


def coins_give(user, amount_uk: int, key: str | None = None) -> Account:
    """Operator credit into ``user``'s wallet."""
    wallet = wallet_ensure(user)
    credit = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post(
        key or f"test:coins:{user.pk}:{amount_uk}", "test", [(credit.pk, -amount_uk), (wallet.pk, amount_uk)]
    )
    return wallet


def wallet_uk(user) -> int:
    return account_balance(wallet_ensure(user).pk)


def hours(n: int):
    """The instant ``n`` whole intervals after the grid's start."""
    return T0 + n * HOUR
