"""Compare the chain with the ledger (``manage.py verify_chain``).

Three things must hold on the deployment in use:
- every account's on-chain balance equals what its last applied batch wrote,
  and that equals the ledger's balance including exactly the entries up to
  the batch's snapshot (later movements show up with the next settlement);
- every settlement fully applied on chain has the digest that its published
  lines hash to today (recomputed from the settlement app's lines), and the
  number of batches that was planned;
- in Merkle mode, the root on chain is the root of the last applied snapshot,
  whose balances match the ledger, and a sample proof verifies on chain.
Batches not yet delivered are lag, reported but not a difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.db.models import Count, Exists, OuterRef, Q

from utility.ledger.selectors import balances_through

from .chain import checksum
from .encoding import line_digest, merkle_layers, merkle_leaf, merkle_proof, merkle_root
from .models import ChainBalance, DeliveryStatus, MirrorBatch, MirrorDelivery, MirrorSettlement
from .selectors import latest_applied_root
from .services import Connected
from .sources import settlement_lines

CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Difference:
    what: str
    detail: str


@dataclass(slots=True)
class Verification:
    backend: str
    contract: str
    accounts_checked: int = 0
    settlements_checked: int = 0
    batches_pending: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}


def chain_verify(connected: Connected) -> Verification:
    """Every on-chain balance and digest of the deployment against the ledger."""
    deployment = connected.deployment
    report = Verification(connected.chain.backend, deployment.address)
    _check_balances(connected, report)
    _check_settlements(connected, report)
    _check_root(connected, report)
    applied = MirrorDelivery.objects.filter(batch=OuterRef("pk"), deployment=deployment, status=DeliveryStatus.APPLIED)
    report.batches_pending = MirrorBatch.objects.filter(~Exists(applied)).count()
    failed = MirrorDelivery.objects.filter(deployment=deployment, status=DeliveryStatus.FAILED)
    for delivery in failed.select_related("batch__settlement"):
        report.differences.append(Difference("batch_failed", f"{delivery.batch} reverted ({delivery.tx_hash})"))
    return report


def _check_balances(connected: Connected, report: Verification) -> None:
    rows = ChainBalance.objects.filter(deployment=connected.deployment).order_by("account_id")
    last_id = 0
    while True:
        chunk = list(
            rows.filter(account_id__gt=last_id).values_list("account_id", "address", "balance_uk", "through_entry_id")[
                :CHUNK
            ]
        )
        if not chunk:
            return
        last_id = chunk[-1][0]
        on_chain = connected.chain.balances_of(connected.deployment.address, [row[1] for row in chunk])
        ledger = balances_through({row[0]: row[3] for row in chunk})
        for (account_id, address, mirrored_uk, through), chain_uk in zip(chunk, on_chain, strict=True):
            report.accounts_checked += 1
            if chain_uk != mirrored_uk:
                report.differences.append(
                    Difference(
                        "balance", f"account {account_id} at {address}: chain {chain_uk} µk, mirrored {mirrored_uk} µk"
                    )
                )
            if ledger.get(account_id) != mirrored_uk:
                report.differences.append(
                    Difference(
                        "ledger",
                        f"account {account_id}: mirrored {mirrored_uk} µk, ledger through entry {through} "
                        f"{ledger.get(account_id)} µk",
                    )
                )


def _check_settlements(connected: Connected, report: Verification) -> None:
    deployment = connected.deployment
    done = MirrorSettlement.objects.annotate(
        applied=Count(
            "batches__deliveries",
            filter=Q(batches__deliveries__deployment=deployment, batches__deliveries__status=DeliveryStatus.APPLIED),
        )
    ).order_by("pk")
    for planned in done.iterator(chunk_size=200):
        if planned.applied == 0:
            continue
        digest, batches = connected.chain.read(deployment.address, "settlementOf", planned.settlement_id)
        report.settlements_checked += 1
        chain_digest = "0x" + bytes(digest).hex()
        if chain_digest != planned.digest:
            report.differences.append(
                Difference(
                    "digest", f"settlement {planned.settlement_id}: chain {chain_digest}, planned {planned.digest}"
                )
            )
        if batches != planned.applied:
            report.differences.append(
                Difference("batches", f"settlement {planned.settlement_id}: chain {batches}, applied {planned.applied}")
            )
        lines = settlement_lines(planned.transaction_id)
        recomputed = "0x" + line_digest(lines.settlement_id, lines.lines).hex() if lines else "(no lines)"
        if recomputed != planned.digest:
            report.differences.append(
                Difference(
                    "lines", f"settlement {planned.settlement_id}: its lines hash to {recomputed}, not {planned.digest}"
                )
            )


def _check_root(connected: Connected, report: Verification) -> None:
    batch = latest_applied_root(connected)
    if batch is None:
        return
    address = connected.deployment.address
    chain_root = "0x" + bytes(connected.chain.read(address, "balancesRoot")).hex()
    leaves = [merkle_leaf(item[1], item[2]) for item in batch.items]
    if chain_root != batch.root or "0x" + merkle_root(leaves).hex() != batch.root:
        report.differences.append(Difference("root", f"chain root {chain_root}, snapshot {batch.root}"))
    ledger = balances_through({item[0]: item[3] for item in batch.items})
    for account_id, _, balance_uk, through in batch.items:
        report.accounts_checked += 1
        if ledger.get(account_id) != balance_uk:
            report.differences.append(
                Difference(
                    "ledger", f"account {account_id}: root holds {balance_uk} µk, ledger through {through} differs"
                )
            )
    if batch.items:
        layers = merkle_layers(leaves)
        sample = batch.items[:: max(1, len(batch.items) // 5)]
        for _, account, balance_uk, _ in sample:
            proof = merkle_proof(layers, merkle_leaf(account, balance_uk))
            if not connected.chain.read(address, "verifyBalance", checksum(account), balance_uk, proof):
                report.differences.append(Difference("proof", f"verifyBalance refuses {account} = {balance_uk} µk"))
