"""Where the mirror gets a settlement's lines.

``contracts`` sits below ``settlement`` in the dependency graph, so it cannot
import it. Settlement registers a function here (in its AppConfig.ready) that
turns a settlement's ledger transaction id into its published lines; the mirror
and ``verify_chain`` call it to compute digests. The changed balances come from
the ledger itself (the accounts of the transaction's entries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .encoding import ChainLine


@dataclass(frozen=True, slots=True)
class SettlementLines:
    """A settlement as the chain sees it: its id on chain, its ledger key and lines."""

    settlement_id: int
    key: str
    transaction_id: int
    lines: tuple[ChainLine, ...]


LineSource = Callable[[int], "SettlementLines | None"]
# Ledger transactions of this kind are settlements (utility's settlement posts them).
SETTLEMENT_TRANSACTION_KIND = "settlement"

_source: LineSource | None = None


class NoLineSource(RuntimeError):
    """No app registered a line source (is ``settlement`` installed?)."""


def register_line_source(source: LineSource) -> None:
    """Install ``source(transaction_id) -> SettlementLines | None``."""
    global _source
    _source = source


def settlement_lines(transaction_id: int) -> SettlementLines | None:
    """The settlement behind a ledger transaction, or None if it is not one."""
    if _source is None:
        raise NoLineSource("no settlement line source is registered")
    return _source(transaction_id)
