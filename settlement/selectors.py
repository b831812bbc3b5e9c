"""Reads of settlements."""

from __future__ import annotations

from django.db.models import QuerySet

from meters.models import Grid

from .models import SettlementLine, SettlementRun


def runs_recent(grid: Grid, limit: int = 24) -> QuerySet[SettlementRun]:
    """The grid's latest settled intervals, newest first."""
    return SettlementRun.objects.filter(grid=grid, status="settled").order_by("-interval_start")[:limit]


def lines_for_meter(meter_id: int, limit: int = 48) -> QuerySet[SettlementLine]:
    return (
        SettlementLine.objects.filter(meter_id=meter_id).select_related("run").order_by("-run__interval_start")[:limit]
    )


def settlement_lines_for_chain(transaction_id: int):
    """The published lines of the settlement that posted a ledger transaction,
    for the chain mirror's digest (registered with ``contracts.sources``)."""
    from contracts.encoding import ChainLine
    from contracts.sources import SettlementLines

    run = SettlementRun.objects.filter(transaction_id=transaction_id).select_related("transaction").first()
    if run is None:
        return None
    rows = SettlementLine.objects.filter(run=run).values_list(
        "meter__public_id", "import_wh", "export_wh", "debit_uk", "credit_uk"
    )
    lines = tuple(ChainLine(*row) for row in rows.iterator(chunk_size=5000))
    return SettlementLines(run.pk, run.transaction.idempotency_key, transaction_id, lines)
