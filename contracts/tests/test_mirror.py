"""The mirror end to end, on the in-process EVM and on anvil: settlements
planned, delivered in batches and verified; replays, outages and restarts."""

from __future__ import annotations

import json

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from eth_utils import keccak

from contracts import chain as chainlib
from contracts import tasks
from contracts.delivery import mirror_drain
from contracts.encoding import account_address, line_digest
from contracts.models import ChainBalance, DeliveryStatus, MirrorBatch, MirrorDelivery, MirrorSettlement
from contracts.selectors import account_on_chain, mirror_status
from contracts.services import batch_size, chain_connected, mirror_settlement_plan
from utility.ledger.models import Account
from utility.ledger.services import account_ensure, transaction_post

pytestmark = pytest.mark.django_db

# Room for exactly two new accounts per batch, so small settlements span batches.
TWO_PER_BATCH = chainlib.BATCH_BASE_GAS + 2 * chainlib.GAS_PER_NEW_ACCOUNT

FIRST = {
    "meter:M-1": -3_000_000,
    "meter:M-2": -2_000_000,
    "meter:M-3": 2_721_818,
    "meter:M-4": 2_268_182,
    "fee:g": 10_000,
}
SECOND = {"meter:M-1": -1_000, "meter:M-3": 990, "meter:M-5": 5, "pool:g": 5}


def verify() -> dict:
    """``manage.py verify_chain --json``; raises CommandError on a difference."""
    out = []

    class Sink:
        def write(self, text):
            out.append(text)

    call_command("verify_chain", "--json", stdout=Sink())
    return json.loads("".join(out))


def chain_balances(codes: list[str]) -> list[int]:
    connected = chain_connected()
    return connected.chain.balances_of(connected.deployment.address, [account_address(c) for c in codes])


def ledger_balances(codes: list[str]) -> list[int]:
    found = dict(Account.objects.filter(code__in=codes).values_list("code", "balance_uk"))
    return [found[c] for c in codes]


def applied_events(connected) -> list[tuple[int, int]]:
    """(settlementId, batchNo) of every BatchApplied event the contract emitted."""
    contract = connected.chain.contract(connected.deployment.address)
    logs = contract.events.BatchApplied().get_logs(from_block=0)
    return [(log["args"]["settlementId"], log["args"]["batchNo"]) for log in logs]


def test_a_settlement_is_mirrored_in_batches_and_verifies(mirror, settings, settlements):
    settings.CHAIN_BATCH_GAS = TWO_PER_BATCH
    assert batch_size() == 2
    first = settlements.post(FIRST)
    assert tasks.mirror_settlement(first.transaction_id) == 3  # 5 accounts, 2 per batch
    codes = list(FIRST)
    assert chain_balances(codes) == ledger_balances(codes)
    second = settlements.post(SECOND)
    tasks.mirror_settlement(second.transaction_id)
    codes = sorted(set(FIRST) | set(SECOND))
    assert chain_balances(codes) == ledger_balances(codes)
    report = verify()
    assert report["ok"] and report["differences"] == []
    assert report["accounts_checked"] == len(codes) and report["settlements_checked"] == 2
    assert report["batches_pending"] == 0
    connected = chain_connected()
    digest, batches = connected.chain.read(connected.deployment.address, "settlementOf", first.settlement_id)
    assert bytes(digest) == line_digest(first.settlement_id, first.lines) and batches == 3
    assert sorted(applied_events(connected)) == [(first.settlement_id, n) for n in range(3)] + [
        (second.settlement_id, n) for n in range(2)
    ]
    assert set(MirrorDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.APPLIED}


def test_a_replayed_batch_changes_nothing(mirror, settings, settlements):
    first = settlements.post(FIRST)
    tasks.mirror_settlement(first.transaction_id)
    connected = chain_connected()
    chain, address = connected.chain, connected.deployment.address
    delivery = MirrorDelivery.objects.get()
    codes = list(FIRST)
    before = chain_balances(codes)
    nonce = chain.nonce()
    # The very same signed transaction again: the node knows it, nothing happens.
    chain.send_raw(bytes.fromhex(delivery.raw_tx))
    # The same batch id signed anew (a new nonce), even with other balances: refused.
    batch = delivery.batch
    for balances in ([item[2] for item in batch.items], [1] * len(batch.items)):
        signed = chain.sign_apply_batch(
            address,
            first.settlement_id,
            batch.batch_no,
            [(item[1], b) for item, b in zip(batch.items, balances, strict=True)],
            bytes.fromhex(batch.settlement.digest[2:]),
            chain.nonce(),
        )
        chain.send_raw(signed.raw)
        receipt = chain.wait_receipt(signed.tx_hash, 10)
        assert receipt is not None and not receipt.ok
    assert chain_balances(codes) == before
    assert chain.nonce() == nonce + 2  # only the two refused transactions went out
    # And the mirror itself never sends a batch twice.
    assert mirror_drain().applied == 0
    assert MirrorDelivery.objects.get().tx_hash == delivery.tx_hash
    assert applied_events(connected).count((first.settlement_id, 0)) == 1
    assert verify()["ok"]


class Outage:
    """Takes the chain down right before the n-th batch is sent: a real anvil
    is stopped by pid; the in-process EVM's provider starts refusing
    connections (it cannot be stopped without losing its chain)."""

    def __init__(self, mirror: str, anvil, connected, monkeypatch) -> None:
        self.mirror, self.anvil, self.connected = mirror, anvil, connected
        self.down = False
        self.sends = 0
        provider = connected.chain.w3.provider
        original = provider.make_request

        def make_request(method, params):
            if self.down:
                raise requests.ConnectionError("node stopped")
            return original(method, params)

        if mirror == "embedded":
            monkeypatch.setattr(provider, "make_request", make_request)
            monkeypatch.setattr(provider, "_request_func_cache", (None, None))  # web3 caches the bound method

    def stop(self) -> None:
        self.down = True
        if self.mirror == "anvil":
            self.anvil.stop()

    def start(self) -> None:
        self.down = False
        if self.mirror == "anvil":
            self.anvil.start()

    def before_send(self, monkeypatch, at: int) -> None:
        chain = self.connected.chain
        original = chain.send_raw
        sent: list[str] = []

        def send_raw(raw):
            self.sends += 1
            if self.sends == at:
                if self.mirror == "anvil" and sent:
                    # anvil mines in the background, and a SIGTERM caught between
                    # applying a transaction and storing its block writes a state
                    # without that block: after the restart the batch counts as
                    # applied but its receipt and event are gone (seen in CI).
                    # A node that lost its own history is not this test's subject.
                    self.anvil.wait_receipt(sent[-1])
                self.stop()
            sent.append("0x" + keccak(raw).hex())
            return original(raw)

        monkeypatch.setattr(chain, "send_raw", send_raw)


def test_node_stopped_mid_mirror_then_restarted(mirror, settings, settlements, monkeypatch, request):
    settings.CHAIN_BATCH_GAS = TWO_PER_BATCH
    connected = chain_connected()
    anvil = request.getfixturevalue("anvil") if mirror == "anvil" else None
    outage = Outage(mirror, anvil, connected, monkeypatch)
    outage.before_send(monkeypatch, at=2)
    first = settlements.post(FIRST)
    tasks.mirror_settlement(first.transaction_id)  # batch 0 goes out, the node dies sending batch 1
    recorded = MirrorDelivery.objects.get(batch__batch_no=1)
    assert recorded.status == DeliveryStatus.SIGNED and recorded.tx_hash  # recorded before it was sent
    status = mirror_status()
    # Batches 1 and 2 wait; batch 0 too unless its receipt was read before the
    # node died (on anvil that is a race with the stop, so either count is right).
    assert not status.reachable and status.batches_pending in (2, 3)
    # Settlement goes on while the chain is down: the next one is planned and waits.
    second = settlements.post(SECOND)
    assert tasks.mirror_settlement(second.transaction_id) == 2
    assert tasks.mirror_drain()["blocked_by"].startswith("chain unavailable")
    # The first settlement's three batches were recorded together before any was sent.
    assert MirrorBatch.objects.count() == 5 and MirrorDelivery.objects.count() == 3
    outage.start()
    result = tasks.mirror_drain()
    # Whatever waited (batch 0 only if its receipt was not read in time) and the second settlement's two.
    waiting = status.batches_pending + 2
    assert result["applied"] == waiting and result["pending"] == 0 and not result["blocked_by"]
    resent = MirrorDelivery.objects.get(batch__batch_no=1, batch__settlement__settlement_id=first.settlement_id)
    assert resent.tx_hash == recorded.tx_hash and resent.attempts == 1  # the same transaction, re-sent
    events = applied_events(connected)
    assert sorted(events) == sorted(set(events))  # no batch applied twice
    assert len(events) == 5
    codes = sorted(set(FIRST) | set(SECOND))
    assert chain_balances(codes) == ledger_balances(codes)
    assert verify()["ok"]
    assert mirror_status().lag_s == 0


def test_a_spent_nonce_is_signed_again_for_the_same_batch(mirror, settings, settlements, monkeypatch):
    """A crash after recording, while another transaction took the nonce: the
    same batch is signed again with a new nonce, and applied once."""
    connected = chain_connected()
    chain = connected.chain
    monkeypatch.setattr(chain, "send_raw", lambda raw: (_ for _ in ()).throw(chainlib.ChainUnavailable("crash")))
    first = settlements.post(FIRST)
    tasks.mirror_settlement(first.transaction_id)
    recorded = MirrorDelivery.objects.get()
    monkeypatch.undo()
    operator_key = settings.CHAIN_OPERATOR_KEY or chainlib.EMBEDDED_OPERATOR_KEY
    chain.transact_as(operator_key, connected.deployment.address, "transferOwnership", chain.operator)  # spends it
    assert mirror_drain().applied == 1
    again = MirrorDelivery.objects.get()
    assert again.status == DeliveryStatus.APPLIED and again.attempts == 2 and again.nonce > recorded.nonce
    assert applied_events(connected) == [(first.settlement_id, 0)]
    assert verify()["ok"]


def test_verify_chain_reports_a_difference(embedded, settings, settlements):
    first = settlements.post(FIRST)
    tasks.mirror_settlement(first.transaction_id)
    connected = chain_connected()
    victim = account_address("meter:M-1")
    # Someone with the operator key writes a balance the ledger never had.
    chain = connected.chain
    chain.transact_as(
        chainlib.EMBEDDED_OPERATOR_KEY, connected.deployment.address, "applyBatch",
        999, 0, [chainlib.checksum(victim)], [123], b"\x01" * 32,
    )  # fmt: skip
    with pytest.raises(CommandError) as failed:
        verify()
    assert failed.value.returncode == 1
    row = ChainBalance.objects.get(address=victim)
    assert row.balance_uk == -3_000_000


def test_verify_chain_reports_a_changed_line(embedded, settings, settlements):
    first = settlements.post(FIRST)
    tasks.mirror_settlement(first.transaction_id)
    lines = list(first.lines)
    lines[0] = type(lines[0])(lines[0].meter_id, lines[0].import_wh + 1, *list(vars_of(lines[0]))[2:])
    settlements.by_transaction[first.transaction_id] = type(first)(
        first.settlement_id, first.key, first.transaction_id, tuple(lines)
    )
    with pytest.raises(CommandError):
        verify()


def vars_of(line) -> tuple:
    return (line.meter_id, line.import_wh, line.export_wh, line.debit_uk, line.credit_uk)


def test_missed_settlements_are_caught_up_by_the_drain(embedded, settlements):
    first = settlements.post(FIRST)  # its mirror task never ran
    result = tasks.mirror_drain()
    assert result["planned"] == 1 and result["applied"] == 1
    assert MirrorSettlement.objects.get().transaction_id == first.transaction_id
    assert mirror_settlement_plan(first.transaction_id).batch_count == 1  # planned once
    assert MirrorBatch.objects.count() == 1


def test_a_new_embedded_chain_is_re_mirrored(embedded, settlements):
    from contracts.services import chain_reset

    first = settlements.post(FIRST)
    tasks.mirror_settlement(first.transaction_id)
    old = chain_connected().deployment
    chain_reset()  # a new process: its in-process chain starts empty
    connected = chain_connected()
    assert connected.deployment.pk != old.pk
    assert mirror_drain().applied == 1
    assert chain_balances(list(FIRST)) == ledger_balances(list(FIRST))
    assert verify()["ok"]


def test_residents_register_their_own_address(embedded, settlements, django_user_model):
    from contracts.services import MirrorError, account_address_register

    alice = django_user_model.objects.create_user("alice")
    mallory = django_user_model.objects.create_user("mallory")
    wallet = account_ensure("wallet:alice", "wallet", owner=alice)
    own = "0x" + "ab" * 20
    for who, address in [(mallory, own), (alice, "0x123"), (alice, "0x" + "00" * 20), (alice, 42)]:
        with pytest.raises(MirrorError):
            account_address_register(wallet.pk, address, who)
    account_address_register(wallet.pk, own.upper().replace("0X", "0x"), alice)
    first = settlements.post({"wallet:alice": 700, "meter:M-9": -700})
    tasks.mirror_settlement(first.transaction_id)
    view = account_on_chain(wallet.pk)
    assert view.address == own and view.chain_balance_uk == 700 and view.in_sync
    assert view.tx_hash == MirrorDelivery.objects.get().tx_hash
    assert view.settlement_id == first.settlement_id
    # The ledger moves on; the chain keeps the settlement's balance until the next one.
    fee = account_ensure("fee:g", "fee")
    transaction_post("fund:1", "funding", [(wallet.pk, 300), (fee.pk, -300)])
    view = account_on_chain(wallet.pk)
    assert view.ledger_balance_uk == 1000 and view.chain_balance_uk == 700 and view.in_sync
    assert verify()["ok"]


def test_merkle_mode_commits_one_root_per_settlement(mirror, settings, settlements):
    from contracts.selectors import account_merkle_proof

    settings.CHAIN_MODE = "merkle"
    first = settlements.post(FIRST)
    second = settlements.post(SECOND)
    tasks.mirror_settlement(first.transaction_id)
    tasks.mirror_settlement(second.transaction_id)
    assert MirrorBatch.objects.count() == 2
    root_batch = MirrorBatch.objects.order_by("pk").last()
    assert len(root_batch.items) == len(set(FIRST) | set(SECOND))  # every mirrored account
    gas = MirrorDelivery.objects.order_by("pk").last().gas_used
    assert gas < 100_000  # one small transaction whatever the number of accounts
    connected = chain_connected()
    m1 = Account.objects.get(code="meter:M-1")
    proof = account_merkle_proof(m1.pk)
    assert proof.balance_uk == m1.balance_uk and proof.settlement_id == second.settlement_id
    address = connected.deployment.address
    assert connected.chain.read(
        address, "verifyBalance", chainlib.checksum(proof.address), proof.balance_uk, proof.proof
    )
    assert not connected.chain.read(
        address, "verifyBalance", chainlib.checksum(proof.address), proof.balance_uk + 1, proof.proof
    )
    assert verify()["ok"]


def test_operators_see_the_mirror_status(embedded, settlements):
    first = settlements.post(FIRST)
    mirror_settlement_plan(first.transaction_id)
    out = []

    class Sink:
        def write(self, text):
            out.append(text)

    call_command("chain_status", "--json", stdout=Sink())
    before = json.loads("".join(out))
    assert before["reachable"] and before["batches_pending"] == 1 and before["batches_applied"] == 0
    assert before["lag_s"] >= 0 and before["oldest_pending_at"]
    mirror_drain()
    after = mirror_status()
    assert after.batches_pending == 0 and after.batches_applied == 1 and after.lag_s == 0
    assert after.last_tx_hash == MirrorDelivery.objects.get().tx_hash
