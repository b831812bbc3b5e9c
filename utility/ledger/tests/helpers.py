"""Shared helpers for the ledger tests (no imports from the apps above the core)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

from utility.ledger.models import Account, AccountKind
from utility.ledger.selectors import account_balance
from utility.ledger.services import account_ensure


def accounts_make(*names: str, kind: str = AccountKind.METER) -> list[Account]:
    """One ledger account per name, with code ``test:<name>``."""
    return [account_ensure(f"test:{name}", kind) for name in names]


def balances(*accounts: Account) -> list[int]:
    """Cached balances in µk, fresh from the database."""
    return [account_balance(account.pk) for account in accounts]


def run_concurrently(workers: list[Callable[[], Any]], timeout_s: float = 30) -> list[Any]:
    """Run each callable in its own thread, all released at once by a barrier.

    Returns each worker's result, or the exception it raised. Every thread
    closes its own database connection, so the test database can be flushed.
    """
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout_s)
            results[index] = work()
        except Exception as exc:  # reported to the test, which asserts on it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return results
