"""The market: auctioned offers and their bids, buyers' standing limits,
contracts and their deliveries per interval, and the published prices.

Money in integer µk, prices in µk per kWh, energy in Wh, voltages in
decivolts, times UTC-aware, delivery windows ``[start, end)`` aligned to the
grid's intervals. Coins a bid or a contract holds sit in a ledger account of
kind ``market_escrow``: one per offer (bids, then the auction's contract) and
one per bilateral contract (its deposit).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from meters.models import Grid, Meter
from utility.ledger.models import Account


class OfferStatus(models.TextChoices):
    OPEN = "open", "Open"
    SOLD = "sold", "Sold"
    UNSOLD = "unsold", "Unsold"
    CANCELLED = "cancelled", "Cancelled"


class Offer(models.Model):
    """A producer's energy put up for a timed auction: ``energy_wh`` delivered
    during ``[delivery_start, delivery_end)``; the highest bid at ``ends_at`` wins."""

    grid = models.ForeignKey(Grid, on_delete=models.PROTECT, related_name="offers")
    seller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="offers")
    seller_meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="offers")
    energy_wh = models.BigIntegerField()
    delivery_start = models.DateTimeField()
    delivery_end = models.DateTimeField()
    start_price_uk_per_kwh = models.BigIntegerField()
    reserve_price_uk_per_kwh = models.BigIntegerField(null=True, blank=True)
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=OfferStatus.choices, default=OfferStatus.OPEN)
    # Set in the transaction that creates the offer (its code names the offer's id).
    escrow_account = models.OneToOneField(Account, null=True, on_delete=models.PROTECT, related_name="offer")
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(energy_wh__gt=0), name="offer_energy_positive"),
            models.CheckConstraint(condition=Q(delivery_end__gt=F("delivery_start")), name="offer_window"),
            models.CheckConstraint(condition=Q(start_price_uk_per_kwh__gt=0), name="offer_price_positive"),
            models.CheckConstraint(condition=Q(ends_at__lte=F("delivery_start")), name="offer_ends_before_delivery"),
        ]
        indexes = [models.Index(fields=["status", "ends_at"], name="offer_status_ends")]

    def __str__(self) -> str:
        return f"offer {self.pk} ({self.energy_wh} Wh from {self.seller_meter_id})"


class BidStatus(models.TextChoices):
    STANDING = "standing", "Standing"
    OUTBID = "outbid", "Outbid"
    CANCELLED = "cancelled", "Cancelled"
    WON = "won", "Won"
    LOST = "lost", "Lost"


class Bid(models.Model):
    """A resident's bid: ``amount_uk`` (the whole offer at this price) is held
    from their wallet while it stands."""

    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="bids")
    bidder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bids")
    buyer_meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="bids")
    price_uk_per_kwh = models.BigIntegerField()
    amount_uk = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=BidStatus.choices, default=BidStatus.STANDING)
    placed_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(price_uk_per_kwh__gt=0, amount_uk__gt=0), name="bid_positive")
        ]
        indexes = [models.Index(fields=["offer", "status"], name="bid_offer_status")]

    def __str__(self) -> str:
        return f"bid {self.pk} on offer {self.offer_id}"


class BuyerLimit(models.Model):
    """A buyer's standing limits for bilateral sales to one of their meters."""

    grid = models.ForeignKey(Grid, on_delete=models.PROTECT, related_name="buyer_limits")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="buyer_limits")
    buyer_meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="buyer_limits")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    max_price_uk_per_kwh = models.BigIntegerField()
    min_payment_uk = models.BigIntegerField()
    max_payment_uk = models.BigIntegerField()
    max_deposit_uk = models.BigIntegerField()
    v_min_dv = models.IntegerField()
    v_max_dv = models.IntegerField()
    # Dual metering: how far (basis points) the seller's metered delivery may
    # fall short of what the buyer's meter received before the buyer stops paying.
    tolerance_bp = models.IntegerField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="limit_period"),
            models.CheckConstraint(condition=Q(min_payment_uk__lte=F("max_payment_uk")), name="limit_payments"),
            models.CheckConstraint(condition=Q(v_min_dv__lt=F("v_max_dv")), name="limit_band"),
            models.UniqueConstraint(
                fields=["buyer_meter"], condition=Q(active=True), name="one_active_limit_per_meter"
            ),
        ]

    def __str__(self) -> str:
        return f"limits {self.pk} for {self.buyer_meter_id}"


class ContractKind(models.TextChoices):
    AUCTION = "auction", "Auction"
    BILATERAL = "bilateral", "Bilateral"


class ContractStatus(models.TextChoices):
    AWAITING_DEPOSIT = "awaiting_deposit", "Awaiting deposit"
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    BREACHED = "breached", "Breached by the seller"
    PAYMENT_MISSED = "payment_missed", "Payment missed"
    CANCELLED = "cancelled", "Cancelled"


OPEN_CONTRACT_STATUSES = (ContractStatus.AWAITING_DEPOSIT, ContractStatus.ACTIVE)


class Contract(models.Model):
    """A sale of energy from ``seller_meter`` to ``buyer_meter`` at a price.

    Settlement covers up to ``wh_per_interval`` (and at most ``energy_wh`` in
    all) each interval of the window, paid from ``escrow_account``.
    ``tolerance_bp`` None: no dual-metering check; ``v_*_dv`` None: no band.
    """

    grid = models.ForeignKey(Grid, on_delete=models.PROTECT, related_name="market_contracts")
    kind = models.CharField(max_length=10, choices=ContractKind.choices)
    seller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sales")
    seller_meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="sales")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    buyer_meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="purchases")
    price_uk_per_kwh = models.BigIntegerField()
    energy_wh = models.BigIntegerField()
    wh_per_interval = models.BigIntegerField()
    delivery_start = models.DateTimeField()
    delivery_end = models.DateTimeField()
    deposit_uk = models.BigIntegerField(default=0)
    tolerance_bp = models.IntegerField(null=True, blank=True)
    v_min_dv = models.IntegerField(null=True, blank=True)
    v_max_dv = models.IntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=ContractStatus.choices)
    # An auction's contract keeps its offer's escrow (the winning bid's hold);
    # a bilateral one gets its own, set in the transaction that creates it.
    escrow_account = models.OneToOneField(Account, null=True, on_delete=models.PROTECT, related_name="market_contract")
    offer = models.OneToOneField(Offer, null=True, blank=True, on_delete=models.PROTECT, related_name="contract")
    limit = models.ForeignKey(BuyerLimit, null=True, blank=True, on_delete=models.PROTECT, related_name="contracts")
    delivered_wh = models.BigIntegerField(default=0)
    paid_uk = models.BigIntegerField(default=0)
    breach = models.CharField(max_length=20, blank=True)
    breach_interval = models.DateTimeField(null=True, blank=True)
    breach_detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(delivery_end__gt=F("delivery_start")), name="contract_window"),
            models.CheckConstraint(condition=Q(delivered_wh__lte=F("energy_wh")), name="contract_not_overdelivered"),
            models.CheckConstraint(condition=~Q(seller_meter=F("buyer_meter")), name="contract_two_meters"),
        ]
        indexes = [models.Index(fields=["grid", "status", "delivery_start"], name="contract_grid_status")]

    def __str__(self) -> str:
        return f"contract {self.pk} ({self.kind})"


class PaymentState(models.TextChoices):
    NONE = "none", "Nothing to pay"  # auction contracts are prepaid; nothing delivered
    DUE = "due", "Due"
    PAID = "paid", "Paid"
    FROM_DEPOSIT = "deposit", "Paid from the deposit"
    MISSED = "missed", "Missed"


class Delivery(models.Model):
    """One contract's interval, as settlement measured and paid it."""

    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="deliveries")
    interval_start = models.DateTimeField()
    cap_wh = models.BigIntegerField()
    expected_wh = models.BigIntegerField()
    seller_export_wh = models.BigIntegerField()
    buyer_import_wh = models.BigIntegerField()
    delivered_wh = models.BigIntegerField()
    amount_uk = models.BigIntegerField()
    buyer_v_min_dv = models.IntegerField(null=True, blank=True)
    buyer_v_max_dv = models.IntegerField(null=True, blank=True)
    breach = models.CharField(max_length=20, blank=True)
    payment = models.CharField(max_length=10, choices=PaymentState.choices, default=PaymentState.NONE)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["contract", "interval_start"], name="one_delivery_per_interval")]
        indexes = [models.Index(fields=["payment"], condition=Q(payment="due"), name="delivery_payment_due")]

    def __str__(self) -> str:
        return f"contract {self.contract_id} @ {self.interval_start:%Y-%m-%d %H:%M}Z"


class PricePoint(models.Model):
    """The price published for one grid and interval (``grid/<grid>/price``)."""

    grid = models.ForeignKey(Grid, on_delete=models.PROTECT, related_name="price_points")
    interval_start = models.DateTimeField()
    tariff_uk_per_kwh = models.BigIntegerField()
    market_uk_per_kwh = models.BigIntegerField(null=True, blank=True)
    market_wh = models.BigIntegerField(default=0)
    payload = models.JSONField()
    published = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["grid", "interval_start"], name="one_price_per_interval")]

    def __str__(self) -> str:
        return f"{self.grid_id} price @ {self.interval_start:%Y-%m-%d %H:%M}Z"
