"""Reads of the chain mirror: its lag and status for operators, and for a
resident their on-chain balance with the transaction that last wrote it.
Balances in integer µk, ages in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from utility.ledger.models import Account
from utility.ledger.selectors import balances_through

from . import chain as chainlib
from .encoding import account_address, merkle_layers, merkle_leaf, merkle_proof
from .models import AccountAddress, ChainBalance, ChainDeployment, DeliveryStatus, MirrorBatch, MirrorDelivery
from .services import Connected, chain_connected, current_deployment
from .sources import SETTLEMENT_TRANSACTION_KIND


@dataclass(frozen=True, slots=True)
class MirrorStatus:
    backend: str
    contract: str
    reachable: bool
    error: str
    settlements_unplanned: int  # settled in the ledger, not yet planned
    batches_total: int
    batches_applied: int
    batches_pending: int
    batches_failed: int
    oldest_pending_at: datetime | None
    lag_s: int  # age of the oldest batch not yet on chain (0: in sync)
    last_applied_at: datetime | None
    last_tx_hash: str


def mirror_status() -> MirrorStatus:
    """How far behind the ledger the chain is, and whether the mirror is stuck.
    Works while the node is down (the counts come from the database)."""
    from utility.ledger.models import Transaction

    unplanned = Transaction.objects.filter(kind=SETTLEMENT_TRANSACTION_KIND, mirror__isnull=True).count()
    reachable, error, backend = True, "", settings.CHAIN_BACKEND
    try:
        connected = chain_connected()
        connected.chain.block_number()
        deployment = connected.deployment
    except chainlib.ChainError as exc:
        reachable, error = False, str(exc)
        deployment = _last_deployment()
    deliveries = MirrorDelivery.objects.filter(deployment=deployment)
    applied_q = deliveries.filter(batch=OuterRef("pk"), status=DeliveryStatus.APPLIED)
    pending = MirrorBatch.objects.filter(~Exists(applied_q))
    oldest = pending.order_by("pk").values_list("created_at", flat=True).first()
    last = deliveries.filter(status=DeliveryStatus.APPLIED).order_by("-applied_at").first()
    return MirrorStatus(
        backend=backend,
        contract=deployment.address if deployment else "",
        reachable=reachable,
        error=error,
        settlements_unplanned=unplanned,
        batches_total=MirrorBatch.objects.count(),
        batches_applied=deliveries.filter(status=DeliveryStatus.APPLIED).count(),
        batches_pending=pending.count(),
        batches_failed=deliveries.filter(status=DeliveryStatus.FAILED).count(),
        oldest_pending_at=oldest,
        lag_s=int((timezone.now() - oldest).total_seconds()) if oldest else 0,
        last_applied_at=last.applied_at if last else None,
        last_tx_hash=last.tx_hash if last else "",
    )


def _last_deployment() -> ChainDeployment | None:
    """The deployment in use when the chain cannot be asked (this process's
    own for the embedded chain)."""
    current = current_deployment()
    if current is not None:
        return current
    return ChainDeployment.objects.filter(backend=settings.CHAIN_BACKEND).order_by("-pk").first()


@dataclass(frozen=True, slots=True)
class AccountOnChain:
    address: str
    chain_balance_uk: int
    mirrored_balance_uk: int | None  # what the last batch wrote (None: never mirrored)
    ledger_balance_uk: int  # the ledger now
    in_sync: bool  # the chain holds the ledger's balance as of the last batch
    tx_hash: str  # the transaction of the last batch that touched the account
    settlement_id: int | None


def account_on_chain(account_id: int, connected: Connected | None = None) -> AccountOnChain:
    """A resident's view: the balance the contract holds for their account,
    read from the chain, and the transaction hash that wrote it."""
    connected = connected or chain_connected()
    account = Account.objects.get(pk=account_id)
    row = (
        ChainBalance.objects.filter(deployment=connected.deployment, account_id=account_id)
        .select_related("delivery__batch__settlement")
        .first()
    )
    registered = AccountAddress.objects.filter(account_id=account_id).values_list("address", flat=True).first()
    address = row.address if row else registered or account_address(account.code)
    (chain_balance_uk,) = connected.chain.balances_of(connected.deployment.address, [address])
    if row is None:
        return AccountOnChain(address, chain_balance_uk, None, account.balance_uk, chain_balance_uk == 0, "", None)
    ledger_then = balances_through({account_id: row.through_entry_id})[account_id]
    return AccountOnChain(
        address=address,
        chain_balance_uk=chain_balance_uk,
        mirrored_balance_uk=row.balance_uk,
        ledger_balance_uk=account.balance_uk,
        in_sync=chain_balance_uk == row.balance_uk == ledger_then,
        tx_hash=row.delivery.tx_hash,
        settlement_id=row.delivery.batch.settlement.settlement_id,
    )


@dataclass(frozen=True, slots=True)
class BalanceProof:
    settlement_id: int
    root: str
    address: str
    balance_uk: int
    proof: list[str]


def latest_applied_root(connected: Connected) -> MirrorBatch | None:
    """Merkle mode: the newest root batch the contract has applied."""
    applied = MirrorDelivery.objects.filter(
        batch=OuterRef("pk"), deployment=connected.deployment, status=DeliveryStatus.APPLIED
    )
    return (
        MirrorBatch.objects.exclude(root="")
        .filter(Exists(applied))
        .select_related("settlement")
        .order_by("-pk")
        .first()
    )


def account_merkle_proof(account_id: int, connected: Connected | None = None) -> BalanceProof | None:
    """Merkle mode: the proof of an account's balance under the root on chain,
    for ``verifyBalance(address, balance, proof)`` (None: not under a root)."""
    batch = latest_applied_root(connected or chain_connected())
    if batch is None:
        return None
    item = next((i for i in batch.items if i[0] == account_id), None)
    if item is None:
        return None
    layers = merkle_layers([merkle_leaf(i[1], i[2]) for i in batch.items])
    proof = merkle_proof(layers, merkle_leaf(item[1], item[2]))
    return BalanceProof(batch.settlement.settlement_id, batch.root, item[1], item[2], ["0x" + p.hex() for p in proof])
