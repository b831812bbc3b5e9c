"""Send planned batches to the chain, in order, each exactly once.

For every batch the signed transaction (nonce, tx hash, raw bytes) is
committed to ``MirrorDelivery`` *before* it is broadcast. After a crash, a
timeout or a node outage, the next drain finds that record and re-broadcasts
the same bytes (a node that already has them says so, and the receipt tells
the outcome). Only if the recorded nonce was consumed by another transaction
is the same batch signed again with a new nonce; then at most one of the two
can apply, because the contract refuses a batch it has already applied
(``BatchAlreadyApplied``). One drain runs per deployment at a time (a lease
claimed by conditional UPDATE).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from . import chain as chainlib
from .models import ChainBalance, ChainDeployment, DeliveryStatus, MirrorBatch, MirrorDelivery
from .services import Connected, MirrorError, chain_connected, mirror_settlement_plan
from .sources import SETTLEMENT_TRANSACTION_KIND

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=120)
# Batches of one settlement in flight at once (sent back to back, receipts after).
WINDOW = 32


@dataclass(frozen=True, slots=True)
class DrainResult:
    applied: int
    pending: int
    blocked_by: str = ""  # a failed batch or an unreachable node stops the drain
    busy: bool = False  # another drain holds the lease


def mirror_catch_up(limit: int = 100) -> int:
    """Plan settlements whose mirror task never ran (lost message, chain code
    deployed later): every settlement transaction without a plan. Returns how
    many were planned."""
    from utility.ledger.models import Transaction

    missing = Transaction.objects.filter(kind=SETTLEMENT_TRANSACTION_KIND, mirror__isnull=True).order_by("pk")
    planned, after = 0, 0
    while planned < limit:
        page = list(missing.filter(pk__gt=after).values_list("pk", flat=True)[:100])
        if not page:
            break
        for pk in page:
            if mirror_settlement_plan(pk) is None:
                log.warning("ledger transaction %s is a settlement without published lines", pk)
            else:
                planned += 1
        after = page[-1]
    return planned


def _undelivered(deployment: ChainDeployment, limit: int) -> list[MirrorBatch]:
    applied = MirrorDelivery.objects.filter(batch=OuterRef("pk"), deployment=deployment, status=DeliveryStatus.APPLIED)
    return list(MirrorBatch.objects.filter(~Exists(applied)).select_related("settlement").order_by("pk")[:limit])


def _claim(deployment: ChainDeployment) -> str | None:
    token = secrets.token_hex(8)
    now = timezone.now()
    claimed = (
        ChainDeployment.objects.filter(pk=deployment.pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_token=token, lease_until=now + LEASE)
    )
    return token if claimed else None


def _renew(deployment: ChainDeployment, token: str) -> None:
    ChainDeployment.objects.filter(pk=deployment.pk, lease_token=token).update(lease_until=timezone.now() + LEASE)


def _release(deployment: ChainDeployment, token: str) -> None:
    ChainDeployment.objects.filter(pk=deployment.pk, lease_token=token).update(lease_token="", lease_until=None)


def mirror_drain(max_batches: int | None = None, connected: Connected | None = None) -> DrainResult:
    """Deliver pending batches oldest first until none is left (or
    ``max_batches``). A node that does not answer leaves the rest for the next
    drain (ChainUnavailable is caught here and reported, never raised); a
    reverted batch stops the queue, since later batches must not overtake it.
    """
    try:
        connected = connected or chain_connected()
    except (chainlib.ChainError, MirrorError) as exc:
        log.warning("chain mirror cannot start: %s", exc)
        return DrainResult(0, _pending_count(None), blocked_by=_why(exc))
    deployment = connected.deployment
    token = _claim(deployment)
    if token is None:
        return DrainResult(0, _pending_count(deployment), busy=True)
    applied, blocked = 0, ""
    try:
        while not blocked and (max_batches is None or applied < max_batches):
            todo = _undelivered(deployment, WINDOW if max_batches is None else min(WINDOW, max_batches - applied))
            if not todo:
                break
            done, blocked = _deliver_window(connected.chain, deployment, _same_settlement(todo))
            applied += done
            _renew(deployment, token)
    except chainlib.ChainError as exc:  # never into the caller: settlement must not feel the chain
        blocked = _why(exc)
    finally:
        _release(deployment, token)
    if blocked:
        log.warning("chain mirror stopped: %s", blocked)
    return DrainResult(applied, _pending_count(deployment), blocked_by=blocked)


def _why(exc: Exception) -> str:
    kind = "chain unavailable" if isinstance(exc, chainlib.ChainUnavailable) else "chain error"
    return f"{kind}: {exc}"


def _same_settlement(batches: list[MirrorBatch]) -> list[MirrorBatch]:
    """The leading batches of one settlement: they may be in flight together,
    because the contract applies a settlement's batches strictly in order (a
    later settlement's batches never overtake an earlier one's)."""
    first = batches[0].settlement_id
    return [batch for batch in itertools.takewhile(lambda b: b.settlement_id == first, batches)]


def _deliver_window(chain: chainlib.Chain, deployment: ChainDeployment, batches: list[MirrorBatch]) -> tuple[int, str]:
    """Deliver one settlement's next batches together: batches never sent are
    signed with consecutive nonces and all recorded in one commit, then every
    transaction is sent back to back and the receipts are collected in order.
    A batch with a record already goes the careful way (``_dispatch``) alone.
    Returns (how many applied, why it stopped or "")."""
    known = set(
        MirrorDelivery.objects.filter(batch__in=batches, deployment=deployment).values_list("batch_id", flat=True)
    )
    base_fee = chain.base_fee()
    if batches[0].pk in known:
        delivery = _dispatch(chain, deployment, batches[0], base_fee)
        if isinstance(delivery, str):
            return 0, delivery
        return _collect(chain, deployment, [delivery])
    fresh = list(itertools.takewhile(lambda batch: batch.pk not in known, batches))
    nonce = chain.nonce(pending=True)
    signed = [_sign(chain, deployment, batch, base_fee, nonce + i) for i, batch in enumerate(fresh)]
    now = timezone.now()
    with transaction.atomic():  # recorded before any of them is sent
        in_flight = MirrorDelivery.objects.bulk_create(
            MirrorDelivery(
                batch=batch, deployment=deployment, status=DeliveryStatus.SIGNED, nonce=tx.nonce,
                tx_hash=tx.tx_hash, raw_tx=tx.raw.hex(), gas_limit=tx.gas_limit, signed_at=now,
            )
            for batch, tx in zip(fresh, signed, strict=True)
        )  # fmt: skip
    # An outage while sending leaves the rest recorded: the next drain re-sends them.
    return _collect(chain, deployment, in_flight, _Sender(chain, [tx.raw for tx in signed]))


class _Sender:
    """Broadcasts signed transactions in order. On a node it runs on a thread,
    so the node mines batch k+1 while batch k's receipt is booked in the
    database; py-evm runs in this process (and under the GIL), so there it
    simply sends everything first."""

    def __init__(self, chain: chainlib.Chain, raws: list[bytes]) -> None:
        self.chain, self.raws = chain, raws
        self.sent = 0
        self.error: Exception | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        if chain.backend == "embedded":
            self._run()
        else:
            self._thread = threading.Thread(target=self._run, name="chain-sender", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        for raw in self.raws:
            try:
                self.chain.send_raw(raw)
            except Exception as exc:  # handed to the collecting thread, never lost
                with self._changed:
                    self.error = exc
                    self._changed.notify_all()
                return
            with self._changed:
                self.sent += 1
                self._changed.notify_all()

    def wait_sent(self, index: int, timeout_s: float) -> Exception | None:
        """Wait until transaction ``index`` went out; the reason if it did not."""
        with self._changed:
            self._changed.wait_for(lambda: self.sent > index or self.error is not None, timeout_s)
            if self.sent > index:
                return None
            return self.error or chainlib.ChainUnavailable(f"sending took longer than {timeout_s} s")

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _collect(
    chain: chainlib.Chain, deployment: ChainDeployment, in_flight: list[MirrorDelivery], sender: _Sender | None = None
) -> tuple[int, str]:
    """Book the receipts in order as they come, in one commit (a crash before
    it only means the next drain books them from the receipts); returns (how
    many applied, why it stopped or ""). An outage is raised after booking
    what did arrive."""
    timeout_s = settings.CHAIN_RECEIPT_TIMEOUT_S
    applied, blocked, stop = 0, "", None
    try:
        with transaction.atomic():
            for index, delivery in enumerate(in_flight):
                stop = sender.wait_sent(index, timeout_s) if sender is not None else None
                if stop is not None:
                    break
                try:
                    receipt = chain.wait_receipt(delivery.tx_hash, timeout_s)
                except chainlib.ChainUnavailable as exc:
                    stop = exc
                    break
                if receipt is None:
                    stop = chainlib.ChainUnavailable(f"no receipt for {delivery.tx_hash} within {timeout_s} s")
                    break
                blocked = _finish(chain, deployment, delivery, receipt)
                if blocked:
                    break
                applied += 1
    finally:
        if sender is not None:
            sender.join()
    if stop is not None and not blocked:
        raise stop
    return applied, blocked


def _pending_count(deployment: ChainDeployment | None) -> int:
    if deployment is None:
        return MirrorBatch.objects.count()
    applied = MirrorDelivery.objects.filter(batch=OuterRef("pk"), deployment=deployment, status=DeliveryStatus.APPLIED)
    return MirrorBatch.objects.filter(~Exists(applied)).count()


def _sign(
    chain: chainlib.Chain, deployment: ChainDeployment, batch: MirrorBatch, base_fee: int, nonce: int | None = None
) -> chainlib.Signed:
    planned = batch.settlement
    digest = bytes.fromhex(planned.digest[2:])
    nonce = chain.nonce(pending=True) if nonce is None else nonce
    if batch.root:
        root = bytes.fromhex(batch.root[2:])
        return chain.sign_commit_root(
            deployment.address, planned.settlement_id, root, digest, len(batch.items), nonce, base_fee
        )
    items = [(item[1], item[2]) for item in batch.items]
    return chain.sign_apply_batch(
        deployment.address, planned.settlement_id, batch.batch_no, items, digest, nonce, base_fee
    )


def _record(
    chain: chainlib.Chain,
    deployment: ChainDeployment,
    batch: MirrorBatch,
    base_fee: int,
    existing: MirrorDelivery | None = None,
) -> MirrorDelivery:
    """Sign the batch and commit the delivery record; only then is it sent."""
    signed = _sign(chain, deployment, batch, base_fee)
    fields = {
        "status": DeliveryStatus.SIGNED,
        "nonce": signed.nonce,
        "tx_hash": signed.tx_hash,
        "raw_tx": signed.raw.hex(),
        "gas_limit": signed.gas_limit,
        "signed_at": timezone.now(),
    }
    if existing is None:
        return MirrorDelivery.objects.create(batch=batch, deployment=deployment, **fields)
    for name, value in fields.items():
        setattr(existing, name, value)
    existing.attempts += 1
    existing.save()
    return existing


def _dispatch(
    chain: chainlib.Chain, deployment: ChainDeployment, batch: MirrorBatch, base_fee: int
) -> MirrorDelivery | str:
    """Get one batch's transaction to the node: record and send a new one, or
    re-send the recorded one (signing it anew only if its nonce was spent by
    another transaction). Returns the delivery, or why the queue is blocked."""
    delivery = MirrorDelivery.objects.filter(batch=batch, deployment=deployment).first()
    if delivery is not None and delivery.status == DeliveryStatus.FAILED:
        return f"{batch} failed: {delivery.error or 'reverted'} ({delivery.tx_hash})"
    if delivery is None:
        delivery = _record(chain, deployment, batch, base_fee)
    elif chain.receipt(delivery.tx_hash) is not None:
        return delivery  # it was mined; _collect reads the receipt
    elif chain.nonce(pending=False) > delivery.nonce:
        # Our nonce was spent by another transaction and ours can never be
        # mined: sign the same batch again (the contract applies it once).
        delivery = _record(chain, deployment, batch, base_fee, existing=delivery)
    chain.send_raw(bytes.fromhex(delivery.raw_tx))
    return delivery


def _finish(
    chain: chainlib.Chain, deployment: ChainDeployment, delivery: MirrorDelivery, receipt: chainlib.Receipt
) -> str:
    """Book one receipt (inside the caller's transaction); returns why the
    queue must stop ("" when the batch is applied)."""
    batch = delivery.batch
    if not receipt.ok:
        planned = batch.settlement
        if not chain.read(deployment.address, "isApplied", planned.settlement_id, batch.batch_no):
            delivery.status, delivery.error = DeliveryStatus.FAILED, "reverted"
            delivery.gas_used, delivery.block_number = receipt.gas_used, receipt.block_number
            delivery.save(update_fields=["status", "error", "gas_used", "block_number"])
            return f"{batch} reverted ({delivery.tx_hash})"
        # An earlier transaction of this very batch applied it; this one was refused.
        delivery.error = f"refused as already applied (tx {delivery.tx_hash})"
    delivery.status = DeliveryStatus.APPLIED
    delivery.gas_used, delivery.block_number = receipt.gas_used, receipt.block_number
    delivery.applied_at = timezone.now()
    delivery.save(update_fields=["status", "gas_used", "block_number", "applied_at", "error"])
    if not batch.root:
        _chain_balances_write(deployment, delivery, batch.items)
    return ""


def _chain_balances_write(deployment: ChainDeployment, delivery: MirrorDelivery, items: list[list]) -> None:
    """Upsert what the deployment now holds for each account of the batch."""
    if connection.vendor == "postgresql":
        columns = list(zip(*items, strict=True)) if items else [[], [], [], []]
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO contracts_chainbalance "
                "(deployment_id, account_id, address, balance_uk, through_entry_id, delivery_id) "
                "SELECT %s, x.a, x.ad, x.b, x.t, %s "
                "FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::bigint[]) AS x(a, ad, b, t) "
                "ON CONFLICT (deployment_id, account_id) DO UPDATE SET address = EXCLUDED.address, "
                "balance_uk = EXCLUDED.balance_uk, through_entry_id = EXCLUDED.through_entry_id, "
                "delivery_id = EXCLUDED.delivery_id",
                [deployment.pk, delivery.pk, *map(list, columns)],
            )
        return
    ChainBalance.objects.bulk_create(
        [
            ChainBalance(
                deployment=deployment, account_id=account_id, address=address,
                balance_uk=balance_uk, through_entry_id=through, delivery=delivery,
            )
            for account_id, address, balance_uk, through in items
        ],
        update_conflicts=True,
        unique_fields=["deployment", "account"],
        update_fields=["address", "balance_uk", "through_entry_id", "delivery"],
        batch_size=500,
    )  # fmt: skip
