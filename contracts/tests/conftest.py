"""Fixtures of the chain mirror's tests.

``mirror`` runs a test once on the in-process EVM and once on a real anvil
node (``@pytest.mark.services``); both go through ``chain_connected`` exactly
as the app does. Settlements are made as the settlement app makes them, from
the ledger's side: a ``settlement`` transaction plus its published lines,
served by a line source registered for the test (contracts may not import
settlement; ``settlement/tests/test_chain_mirror.py`` covers the real one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from contracts import services, sources
from contracts.encoding import ChainLine
from contracts.sources import SettlementLines
from utility.ledger.services import account_ensure, transaction_post

from .anvil import OPERATOR_KEY, AnvilProcess


@dataclass
class FakeSettlements:
    """Settlements posted to the real ledger, their lines kept in memory."""

    by_transaction: dict[int, SettlementLines] = field(default_factory=dict)
    counter: int = 0

    def post(self, changes: dict[str, int], lines: list[ChainLine] | None = None) -> SettlementLines:
        """One settlement moving ``changes`` (account code -> µk, summing to
        zero) with ``lines`` (default: one line per meter account)."""
        self.counter += 1
        accounts = {code: account_ensure(code, code.split(":")[0]) for code in changes}
        legs = [(accounts[code].pk, amount) for code, amount in changes.items()]
        key = f"settlement:test:{self.counter}"
        txn = transaction_post(key, sources.SETTLEMENT_TRANSACTION_KIND, legs).transaction
        if lines is None:
            lines = [
                ChainLine(
                    code.split(":", 1)[1],
                    max(0, -amount) // 1000,
                    max(0, amount) // 1000,
                    max(0, -amount),
                    max(0, amount),
                )
                for code, amount in changes.items()
                if code.startswith("meter:")
            ]
        found = SettlementLines(10_000 + self.counter, key, txn.pk, tuple(lines))
        self.by_transaction[txn.pk] = found
        return found


@pytest.fixture
def settlements() -> Iterator[FakeSettlements]:
    fake = FakeSettlements()
    previous = sources._source
    sources.register_line_source(fake.by_transaction.get)
    yield fake
    sources.register_line_source(previous)


@pytest.fixture(scope="session")
def anvil(tmp_path_factory) -> Iterator[AnvilProcess]:
    """A real anvil node for the session; fails (never skips) without it."""
    try:
        node = AnvilProcess(tmp_path_factory.mktemp("anvil"))
        node.start()
    except RuntimeError as exc:
        pytest.fail(f"cannot start anvil: {exc}", pytrace=False)
    yield node
    node.stop()


@pytest.fixture
def embedded(settings) -> Iterator[None]:
    settings.CHAIN_BACKEND = "embedded"
    services.chain_reset()
    yield
    services.chain_reset()


@pytest.fixture
def rpc(settings, anvil) -> Iterator[AnvilProcess]:
    if anvil.block_number() is None:  # a test stopped it and failed before restarting
        anvil.start()
    settings.CHAIN_BACKEND = "rpc"
    settings.CHAIN_RPC_URL = anvil.url
    settings.CHAIN_OPERATOR_KEY = OPERATOR_KEY
    settings.CHAIN_RPC_TIMEOUT_S = 2
    settings.CHAIN_RECEIPT_TIMEOUT_S = 5
    services.chain_reset()
    yield anvil
    services.chain_reset()


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.services)])
def mirror(request) -> str:
    """The backend under test: ``embedded`` or ``anvil`` (a real node)."""
    request.getfixturevalue("embedded" if request.param == "embedded" else "rpc")
    return request.param
