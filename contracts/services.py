"""Writes of the chain mirror: plan a settlement into batches, register a
resident's own address, and find (or deploy) the contract in use.

Planning touches only the database, so a chain outage never delays
settlement: the batches wait in ``MirrorBatch`` and ``delivery.mirror_drain``
sends them in order when the node is back. Balances in integer µk.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from utility.ledger.models import Account
from utility.ledger.selectors import AccountSnapshot, transaction_account_snapshots

from . import chain as chainlib
from .encoding import account_address, line_digest, merkle_leaf, merkle_root
from .models import (
    AccountAddress,
    ChainBackend,
    ChainDeployment,
    MirrorBatch,
    MirrorMode,
    MirrorSettlement,
    PlanLock,
)
from .sources import settlement_lines

ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


class MirrorError(Exception):
    """A request to the mirror that is refused; nothing was written."""


def batch_size(gas_budget: int | None = None) -> int:
    """Accounts per batch: as many as fit ``CHAIN_BATCH_GAS`` if every one is
    a new storage slot (the worst case, ~23,300 gas; an overwrite is ~6,200)."""
    budget = gas_budget if gas_budget is not None else settings.CHAIN_BATCH_GAS
    return max(1, (budget - chainlib.BATCH_BASE_GAS) // chainlib.GAS_PER_NEW_ACCOUNT)


def _items(transaction_id: int, snapshots: list[AccountSnapshot]) -> list[list]:
    """``[account_id, address, balance_uk, through_entry_id]`` per account: a
    registered address if its owner gave one, else the derived one."""
    registered = dict(
        AccountAddress.objects.filter(account__entries__transaction_id=transaction_id)
        .values_list("account_id", "address")
        .distinct()
    )
    return [
        [s.account_id, registered.get(s.account_id) or account_address(s.code), s.balance_uk, s.through_entry_id]
        for s in snapshots
    ]


def mirror_settlement_plan(transaction_id: int, mode: str | None = None) -> MirrorSettlement | None:
    """Plan one settlement (by its ledger transaction) into batches, once.

    The batches carry the balances of every account the transaction touched,
    read from the ledger in one snapshot, with their addresses fixed now, so
    re-sending a batch always sends the same bytes' worth of meaning. Returns
    the existing plan when there is one, None when the transaction is not a
    settlement. Plans are serialized (``PlanLock``) so their batch order is
    their snapshot order.
    """
    existing = MirrorSettlement.objects.filter(transaction_id=transaction_id).first()
    if existing is not None:
        return existing
    found = settlement_lines(transaction_id)
    if found is None:
        return None
    mode = mode or settings.CHAIN_MODE
    if mode not in MirrorMode.values:
        raise MirrorError(f"CHAIN_MODE must be one of {MirrorMode.values}, got {mode!r}")
    digest = "0x" + line_digest(found.settlement_id, found.lines).hex()
    PlanLock.objects.get_or_create(pk=1)
    with transaction.atomic():
        PlanLock.objects.select_for_update().get(pk=1)
        existing = MirrorSettlement.objects.filter(transaction_id=transaction_id).first()
        if existing is not None:
            return existing
        items = _items(transaction_id, transaction_account_snapshots(transaction_id))
        if mode == MirrorMode.MERKLE:
            items, account_count = _merkle_items(items), len(items)
            chunks, roots = [items], ["0x" + merkle_root([merkle_leaf(i[1], i[2]) for i in items]).hex()]
        else:
            size = batch_size()
            chunks = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
            roots, account_count = [""] * len(chunks), len(items)
        planned = MirrorSettlement.objects.create(
            settlement_id=found.settlement_id,
            transaction_id=transaction_id,
            key=found.key,
            mode=mode,
            digest=digest,
            line_count=len(found.lines),
            account_count=account_count,
            batch_count=len(chunks),
        )
        MirrorBatch.objects.bulk_create(
            MirrorBatch(settlement=planned, batch_no=no, items=chunk, root=root)
            for no, (chunk, root) in enumerate(zip(chunks, roots, strict=True))
        )
    return planned


def _merkle_items(changed: list[list]) -> list[list]:
    """Every account the Merkle mode has mirrored: the previous root's items
    with this settlement's changed balances laid over them."""
    previous = MirrorBatch.objects.exclude(root="").order_by("-pk").values_list("items", flat=True).first() or []
    merged = {item[0]: item for item in previous}
    merged.update({item[0]: item for item in changed})
    return [merged[pk] for pk in sorted(merged)]


def account_address_register(account_id: int, address: str, user: AbstractBaseUser) -> AccountAddress:
    """Let a resident name their own address for one of their accounts.

    Only the account's owner may; the address must be a 20-byte hex address,
    not the zero address, and not already someone else's. It is used from the
    next batch that touches the account (earlier balances stay where they were
    posted). Raises MirrorError and writes nothing otherwise.
    """
    if not isinstance(address, str) or not ADDRESS_RE.match(address):
        raise MirrorError("an address is 0x followed by 40 hex digits")
    address = address.lower()
    if int(address, 16) == 0:
        raise MirrorError("the zero address cannot hold a balance")
    if not Account.objects.filter(pk=account_id, owner=user).exists():
        raise MirrorError("you can register an address only for your own account")
    with transaction.atomic():
        taken = AccountAddress.objects.filter(address=address).exclude(account_id=account_id).exists()
        if taken:
            raise MirrorError("this address is already registered for another account")
        registered, _ = AccountAddress.objects.update_or_create(account_id=account_id, defaults={"address": address})
    return registered


# --- the contract in use -----------------------------------------------------------


@dataclass(slots=True)
class Connected:
    chain: chainlib.Chain
    deployment: ChainDeployment


_connected: Connected | None = None
_connect_lock = threading.Lock()


def chain_reset() -> None:
    """Forget this process's chain (tests; the embedded chain is then new)."""
    global _connected
    with _connect_lock:
        _connected = None


def chain_connected() -> Connected:
    """The chain and the deployed contract this process writes to.

    Embedded: one in-process EVM per process, with its own deployment (the
    mirror then re-sends every batch into it). Rpc: the recorded deployment on
    that node, deployed on first use; if its code is gone (a node reset
    without state), a new one is deployed and everything is re-mirrored.
    Raises ChainUnavailable when the node does not answer.
    """
    global _connected
    with _connect_lock:
        if _connected is not None and (_connected.chain.backend == ChainBackend.EMBEDDED or _alive(_connected)):
            return _connected
        if settings.CHAIN_BACKEND == ChainBackend.EMBEDDED:
            chain = chainlib.connect_embedded(settings.CHAIN_OPERATOR_KEY or chainlib.EMBEDDED_OPERATOR_KEY)
            _connected = Connected(chain, _deploy(chain))
            _forget_dead_embedded(_connected.deployment)
        elif settings.CHAIN_BACKEND == ChainBackend.RPC:
            chain = chainlib.connect_rpc(
                settings.CHAIN_RPC_URL, settings.CHAIN_OPERATOR_KEY, timeout_s=settings.CHAIN_RPC_TIMEOUT_S
            )
            _connected = Connected(chain, _rpc_deployment(chain))
        else:
            raise MirrorError(f"CHAIN_BACKEND must be embedded or rpc, got {settings.CHAIN_BACKEND!r}")
        return _connected


def current_deployment() -> ChainDeployment | None:
    """The deployment this process is connected to, without asking the chain."""
    return _connected.deployment if _connected is not None else None


def _alive(connected: Connected) -> bool:
    try:
        return connected.chain.has_code(connected.deployment.address)
    except chainlib.ChainUnavailable:
        raise
    except chainlib.ChainError:
        return False


def _deploy(chain: chainlib.Chain) -> ChainDeployment:
    address, tx_hash = chain.deploy()
    return ChainDeployment.objects.create(
        backend=chain.backend,
        chain_id=chain.chain_id,
        address=address.lower(),
        operator=chain.operator.lower(),
        deploy_tx_hash=tx_hash,
        host=socket.gethostname(),
        pid=os.getpid(),
    )


def _rpc_deployment(chain: chainlib.Chain) -> ChainDeployment:
    """The rpc deployment to use; concurrent workers agree through PlanLock."""
    PlanLock.objects.get_or_create(pk=1)
    with transaction.atomic():
        PlanLock.objects.select_for_update().get(pk=1)
        known = ChainDeployment.objects.filter(backend=ChainBackend.RPC, chain_id=chain.chain_id)
        if settings.CHAIN_CONTRACT_ADDRESS:
            address = settings.CHAIN_CONTRACT_ADDRESS.lower()
            if not chain.has_code(address):
                raise MirrorError(f"no contract at CHAIN_CONTRACT_ADDRESS {address}")
            deployment, _ = known.get_or_create(
                address=address,
                defaults={"operator": chain.operator.lower(), "backend": ChainBackend.RPC, "chain_id": chain.chain_id},
            )
            return deployment
        latest = known.order_by("-pk").first()
        if latest is not None and chain.has_code(latest.address):
            return latest
        return _deploy(chain)


def _forget_dead_embedded(current: ChainDeployment) -> None:
    """Drop the records of in-process chains whose process is gone."""
    host = socket.gethostname()
    stale = ChainDeployment.objects.filter(backend=ChainBackend.EMBEDDED, host=host).exclude(pk=current.pk)
    dead = [pk for pk, pid in stale.values_list("pk", "pid") if pid is None or not _pid_alive(pid)]
    if dead:
        ChainDeployment.objects.filter(pk__in=dead).delete()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier chain of this very process (reset by a test)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
