"""Contracts after settlement: record each interval's delivery, take the
buyer's payments, end contracts, switch off a buyer who missed a payment.

``deliveries_record`` runs inside the settlement's transaction (settlement
calls it with what its pure contract step decided), so a breach stops the
next interval's payments even if nothing else has run yet.
``contracts_review`` runs after (``market_tick``, every minute): safe to run
any number of times, each payment and refund keyed in the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q

from meters.models import Grid
from utility.ledger.models import Account
from utility.ledger.services import InsufficientFunds, transaction_post, wallet_ensure
from utility.lib.timeutil import ensure_utc, format_utc
from utility.payments.selectors import wallet_freeze_reason

from ..models import Contract, ContractKind, ContractStatus, Delivery, PaymentState
from .common import supply_tell

BREACH_SHORTFALL = "shortfall"  # the same codes as settlement.domain.contracts
BREACH_VOLTAGE = "voltage_band"
REASON_PAYMENT_MISSED = "contract_payment_missed"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What settlement decided for one contract and interval (Wh, µk, dV)."""

    contract_id: int
    cap_wh: int
    expected_wh: int
    seller_export_wh: int
    buyer_import_wh: int
    delivered_wh: int
    amount_uk: int
    breach: str
    buyer_v_min_dv: int | None = None
    buyer_v_max_dv: int | None = None


def _breach_detail(contract: Contract, outcome: DeliveryOutcome) -> str:
    if outcome.breach == BREACH_SHORTFALL:
        return (
            f"seller's meter measured {outcome.seller_export_wh} Wh out, buyer's meter {outcome.buyer_import_wh} Wh in "
            f"(contract: {outcome.cap_wh} Wh); short by more than {contract.tolerance_bp} bp"
        )
    return (
        f"buyer's meter saw {outcome.buyer_v_min_dv}–{outcome.buyer_v_max_dv} dV, "
        f"outside the band {contract.v_min_dv}–{contract.v_max_dv} dV"
    )


def deliveries_record(interval_start: datetime, outcomes: Iterable[DeliveryOutcome], now: datetime) -> int:
    """Store one ``Delivery`` per outcome and add it to its contract's totals;
    a breach ends the contract (``breached``: the buyer pays no more). Call it
    in the settlement's transaction, once per interval (the settlement run's
    claim makes it so; the unique delivery per interval enforces it).
    Returns how many deliveries were recorded."""
    outcomes = list(outcomes)
    contracts = Contract.objects.in_bulk([outcome.contract_id for outcome in outcomes])
    Delivery.objects.bulk_create(
        [
            Delivery(
                contract_id=o.contract_id, interval_start=interval_start, cap_wh=o.cap_wh, expected_wh=o.expected_wh,
                seller_export_wh=o.seller_export_wh, buyer_import_wh=o.buyer_import_wh, delivered_wh=o.delivered_wh,
                amount_uk=o.amount_uk, buyer_v_min_dv=o.buyer_v_min_dv, buyer_v_max_dv=o.buyer_v_max_dv,
                breach=o.breach, payment=_payment_state(contracts[o.contract_id], o),
            )
            for o in outcomes
        ]
    )  # fmt: skip
    for outcome in outcomes:
        changes: dict = {"delivered_wh": F("delivered_wh") + outcome.delivered_wh}
        changes["paid_uk"] = F("paid_uk") + outcome.amount_uk
        if outcome.breach:
            changes.update(
                status=ContractStatus.BREACHED, breach=outcome.breach, breach_interval=interval_start,
                breach_detail=_breach_detail(contracts[outcome.contract_id], outcome)[:300], ended_at=now,
            )  # fmt: skip
        Contract.objects.filter(pk=outcome.contract_id).update(**changes)
    return len(outcomes)


def _payment_state(contract: Contract, outcome: DeliveryOutcome) -> str:
    """A bilateral delivery is paid back into the escrow by the buyer; an
    auction's was paid in full when the bid won."""
    if contract.kind == ContractKind.BILATERAL and outcome.amount_uk > 0:
        return PaymentState.DUE
    return PaymentState.NONE


def _refund(contract: Contract) -> int:
    """Give what the contract's escrow still holds back to the buyer's wallet
    (the locked contract's escrow; keyed, so it happens once). Returns µk."""
    held_uk = Account.objects.select_for_update().get(pk=contract.escrow_account_id).balance_uk
    if held_uk <= 0:
        return 0
    wallet = wallet_ensure(contract.buyer)
    transaction_post(
        f"contract:{contract.pk}:refund",
        "market_refund",
        [(contract.escrow_account_id, -held_uk), (wallet.pk, held_uk)],
        memo=f"contract {contract.pk} ended ({contract.status}): escrow back to the buyer",
    )
    return held_uk


def _close_out(contract: Contract, status: str, now: datetime) -> None:
    """End a locked contract: payments still due were covered by the deposit;
    the escrow's balance goes back to the buyer."""
    contract.deliveries.filter(payment=PaymentState.DUE).update(payment=PaymentState.FROM_DEPOSIT)
    if contract.status in (ContractStatus.ACTIVE, ContractStatus.AWAITING_DEPOSIT):
        contract.status, contract.ended_at = status, now
        contract.save(update_fields=["status", "ended_at"])
    _refund(contract)


def _contracts_ending(grid: Grid) -> list[int]:
    """Open contracts whose every interval is settled, or (an auction) fully
    delivered; ended contracts whose escrow still holds coins."""
    over = Q(delivery_end__lte=grid.settled_through) if grid.settled_through else Q(pk__in=[])
    full = Q(kind=ContractKind.AUCTION, delivered_wh__gte=F("energy_wh"))
    opened = Q(status__in=(ContractStatus.ACTIVE, ContractStatus.AWAITING_DEPOSIT)) & (over | full)
    ended = Q(status__in=(ContractStatus.BREACHED, ContractStatus.PAYMENT_MISSED), escrow_account__balance_uk__gt=0)
    return list(Contract.objects.filter(opened | ended, grid=grid).order_by("pk").values_list("pk", flat=True))


def _payment_post(contract: Contract, delivery: Delivery) -> bool:
    """Move one delivery's amount from the buyer's wallet to the escrow;
    False when the wallet is frozen or cannot pay it (nothing moved then)."""
    if wallet_freeze_reason(contract.buyer):
        return False
    wallet = wallet_ensure(contract.buyer)
    legs = [(wallet.pk, -delivery.amount_uk), (contract.escrow_account_id, delivery.amount_uk)]
    try:
        with transaction.atomic():
            transaction_post(
                f"contract:{contract.pk}:pay:{format_utc(delivery.interval_start)}",
                "market_payment",
                legs,
                memo=f"contract {contract.pk}: payment for {format_utc(delivery.interval_start)}",
                floors_uk={wallet.pk: 0},
            )
    except InsufficientFunds:
        return False
    return True


def contract_payment_take(delivery_id: int, now: datetime) -> str:
    """Take one interval's payment from the buyer's wallet into the escrow
    (restoring the deposit). A wallet that cannot pay it (or is frozen)
    misses it: the contract ends, the buyer's meter is told ``disconnect``
    and the escrow's balance goes back to the buyer. Returns the delivery's
    payment state after."""
    now = ensure_utc(now)
    with transaction.atomic():
        contract_id = Delivery.objects.values_list("contract_id", flat=True).get(pk=delivery_id)
        contract = Contract.objects.select_for_update().select_related("buyer", "buyer_meter").get(pk=contract_id)
        delivery = Delivery.objects.get(pk=delivery_id)
        if delivery.payment != PaymentState.DUE:
            return delivery.payment
        if contract.status != ContractStatus.ACTIVE:
            _close_out(contract, contract.status, now)
            return PaymentState.FROM_DEPOSIT
        if not _payment_post(contract, delivery):
            Delivery.objects.filter(pk=delivery.pk).update(payment=PaymentState.MISSED)
            _close_out(contract, ContractStatus.PAYMENT_MISSED, now)
            supply_tell(contract.buyer_meter, "disconnect", REASON_PAYMENT_MISSED, now)
            return PaymentState.MISSED
        Delivery.objects.filter(pk=delivery.pk).update(payment=PaymentState.PAID)
    return PaymentState.PAID


def contracts_review(grid: Grid, now: datetime) -> int:
    """After settlement: end what should end (refunding escrows), then take
    the buyers' due payments, oldest first. Returns how many contracts or
    payments it acted on. Safe to run any number of times."""
    now = ensure_utc(now)
    grid = Grid.objects.get(pk=grid.pk)
    acted = 0
    for contract_id in _contracts_ending(grid):
        with transaction.atomic():
            contract = Contract.objects.select_for_update().select_related("buyer").get(pk=contract_id)
            unpaid = contract.status == ContractStatus.AWAITING_DEPOSIT
            _close_out(contract, ContractStatus.CANCELLED if unpaid else ContractStatus.COMPLETED, now)
        acted += 1
    due = Delivery.objects.filter(contract__grid=grid, payment=PaymentState.DUE).order_by("interval_start", "pk")
    for delivery_id in list(due.values_list("pk", flat=True)):
        contract_payment_take(delivery_id, now)
        acted += 1
    return acted
