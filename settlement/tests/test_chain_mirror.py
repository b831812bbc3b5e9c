"""Settlement feeds the chain mirror by itself: ``settle_grid_due`` commits a
settlement, enqueues ``contracts.tasks.mirror_settlement``, and the contract
ends up holding every changed balance and the digest of the run's lines."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from contracts.encoding import ChainLine, account_address, line_digest
from contracts.services import chain_connected, chain_reset
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make
from settlement.models import SettlementLine, SettlementRun
from settlement.tasks import settle_grid_due
from utility import clock
from utility.ledger.models import Account, Entry

pytestmark = pytest.mark.django_db


@pytest.fixture
def embedded_chain(settings):
    settings.CHAIN_BACKEND = "embedded"
    chain_reset()
    yield
    chain_reset()
    clock.clock_reset()


def test_each_settlement_appears_on_chain_and_verifies(embedded_chain, capsys):
    grid = grid_make("chain")
    meters = [meter_make(grid, "C-1"), meter_make(grid, "C-2"), meter_make(grid, "P-1", "producer")]
    for start in (T0, T0 + HOUR):
        reading_make(meters[0], start, import_wh=3_000)
        reading_make(meters[1], start, import_wh=1_000)
        reading_make(meters[2], start, export_wh=3_500)
    clock.clock_install(lambda: T0 + 2 * HOUR + HOUR)
    assert settle_grid_due.delay(grid.pk).get() == 2

    connected = chain_connected()
    address = connected.deployment.address
    for run in SettlementRun.objects.filter(grid=grid):
        rows = SettlementLine.objects.filter(run=run).values_list(
            "meter__public_id", "import_wh", "export_wh", "debit_uk", "credit_uk"
        )
        digest, batches = connected.chain.read(address, "settlementOf", run.pk)
        assert bytes(digest) == line_digest(run.pk, [ChainLine(*row) for row in rows]) and batches == 1
    touched = Account.objects.filter(pk__in=Entry.objects.values("account_id")).order_by("pk")
    on_chain = connected.chain.balances_of(address, [account_address(a.code) for a in touched])
    assert on_chain == [a.balance_uk for a in touched]
    call_command("verify_chain")
    assert "OK: the chain matches the ledger" in capsys.readouterr().out


def test_a_dead_chain_does_not_hold_settlement_up(settings):
    """The node is down: settlement commits and returns at once; the batches
    are planned and wait for the drain."""
    from contracts.models import MirrorBatch, MirrorSettlement
    from contracts.selectors import mirror_status
    from contracts.tests.anvil import OPERATOR_KEY, free_port

    settings.CHAIN_BACKEND = "rpc"
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.CHAIN_OPERATOR_KEY = OPERATOR_KEY
    settings.CHAIN_RPC_TIMEOUT_S = 1
    chain_reset()
    try:
        grid = grid_make("down")
        meter = meter_make(grid, "D-1")
        reading_make(meter, T0, import_wh=1_000)
        clock.clock_install(lambda: T0 + 2 * HOUR)
        assert settle_grid_due.delay(grid.pk).get() == 1
        assert SettlementRun.objects.get(grid=grid).status == "settled"
        assert MirrorSettlement.objects.count() == 1 and MirrorBatch.objects.count() == 1
        status = mirror_status()
        assert not status.reachable and status.batches_pending == 1
    finally:
        chain_reset()
        clock.clock_reset()
