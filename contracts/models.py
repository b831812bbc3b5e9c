"""The chain mirror's records.

A settlement's changed balances are planned once into ``MirrorBatch`` rows
(settlement id, batch no, the exact (account, address, balance) items) in the
database, whatever the chain is doing. Delivering a batch to one deployed
contract is a ``MirrorDelivery``: its nonce, tx hash and signed transaction are
committed before the transaction is sent, so a crash or a retry re-sends the
same transaction for the same batch id, never a different batch. Balances in
integer µk.
"""

from __future__ import annotations

from django.db import models

from utility.ledger.models import Account, Transaction


class ChainBackend(models.TextChoices):
    EMBEDDED = "embedded", "In-process EVM"
    RPC = "rpc", "JSON-RPC node"


class ChainDeployment(models.Model):
    """One deployed CommunityLedger. The rpc backend keeps one per node and
    address; every process of the embedded backend deploys its own (its chain
    lives in memory) and re-mirrors every batch into it."""

    backend = models.CharField(max_length=10, choices=ChainBackend.choices)
    chain_id = models.BigIntegerField()
    address = models.CharField(max_length=42)
    operator = models.CharField(max_length=42)
    deploy_tx_hash = models.CharField(max_length=66, blank=True)
    # The embedded chain dies with its process: host and pid let a newer
    # process drop the delivery records of chains that no longer exist.
    host = models.CharField(max_length=120, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    # The drain's lease: one sender per deployment (claimed by conditional UPDATE).
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "address"], condition=models.Q(backend="rpc"), name="one_rpc_deployment_per_address"
            )
        ]

    def __str__(self) -> str:
        return f"{self.backend} chain {self.chain_id} at {self.address}"


class MirrorMode(models.TextChoices):
    ACCOUNTS = "accounts", "Every changed balance on chain"
    MERKLE = "merkle", "Only a Merkle root of all balances"


class MirrorSettlement(models.Model):
    """A settlement planned for the chain: its id on chain and its digest."""

    settlement_id = models.BigIntegerField(unique=True)
    transaction = models.OneToOneField(Transaction, on_delete=models.PROTECT, related_name="mirror")
    key = models.CharField(max_length=200)
    mode = models.CharField(max_length=10, choices=MirrorMode.choices, default=MirrorMode.ACCOUNTS)
    digest = models.CharField(max_length=66)
    line_count = models.PositiveIntegerField()
    account_count = models.PositiveIntegerField()
    batch_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"settlement {self.settlement_id} ({self.key})"


class MirrorBatch(models.Model):
    """One batch of a settlement, exactly as it is posted (whatever the chain).

    ``items`` are ``[account_id, address, balance_uk, through_entry_id]``: the
    account's ledger balance including every entry up to that entry id. In
    Merkle mode the one batch holds every mirrored account and ``root``."""

    settlement = models.ForeignKey(MirrorSettlement, on_delete=models.PROTECT, related_name="batches")
    batch_no = models.PositiveIntegerField()
    items = models.JSONField()
    root = models.CharField(max_length=66, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["settlement", "batch_no"], name="one_batch_no_per_settlement")]

    def __str__(self) -> str:
        return f"batch {self.batch_no} of settlement {self.settlement.settlement_id}"


class DeliveryStatus(models.TextChoices):
    SIGNED = "signed", "Signed and recorded (maybe sent)"
    APPLIED = "applied", "Applied on chain"
    FAILED = "failed", "Reverted"


class MirrorDelivery(models.Model):
    """A batch's transaction to one deployment, recorded before it is sent."""

    batch = models.ForeignKey(MirrorBatch, on_delete=models.CASCADE, related_name="deliveries")
    deployment = models.ForeignKey(ChainDeployment, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices)
    nonce = models.BigIntegerField()
    tx_hash = models.CharField(max_length=66)
    raw_tx = models.TextField()
    gas_limit = models.BigIntegerField()
    gas_used = models.BigIntegerField(null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    error = models.CharField(max_length=500, blank=True)
    signed_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "deployment"], name="one_delivery_per_batch_and_chain")]
        indexes = [models.Index(fields=["deployment", "status"], name="delivery_deployment_status")]

    def __str__(self) -> str:
        return f"{self.batch} -> {self.tx_hash} ({self.status})"


class ChainBalance(models.Model):
    """What one deployment holds for an account after its latest applied batch:
    the address written, the balance and the ledger entry it includes."""

    # Every settlement rewrites thousands of these rows: only the unique
    # (deployment, account) index exists, so the updates touch no other index
    # (PostgreSQL can then update in place) and cost a fraction.
    deployment = models.ForeignKey(ChainDeployment, on_delete=models.CASCADE, related_name="balances", db_index=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    address = models.CharField(max_length=42)
    balance_uk = models.BigIntegerField()
    through_entry_id = models.BigIntegerField()
    delivery = models.ForeignKey(MirrorDelivery, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["deployment", "account"], name="one_chain_balance_per_account")]

    def __str__(self) -> str:
        return f"{self.account_id} = {self.balance_uk} µk at {self.address}"


class AccountAddress(models.Model):
    """An address a resident registered for one of their accounts; it replaces
    the derived address from the next batch that touches the account."""

    account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="chain_address")
    address = models.CharField(max_length=42, unique=True)
    registered_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.account_id} -> {self.address}"


class PlanLock(models.Model):
    """A single row locked while planning, so plans take balance snapshots in
    the same order as their batches are delivered (a later plan never carries
    an older balance than an earlier one)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)

    def __str__(self) -> str:
        return "plan lock"
