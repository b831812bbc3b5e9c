"""Fiat ramps: top-ups (coins bought by card), withdrawals (coins paid out to a
bank), refunds, disputes, connected accounts and the Stripe webhook inbox.

Money in the provider's smallest currency unit (``*_cents``) and in micro-coins
(``*_uk``), integers only. Every status moves only forward (see ``RANK``), so an
event delivered late cannot undo a later state. The ledger is the truth for
coins; the ``*_uk`` bookkeeping fields here record what this app has posted.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class TopUpStatus(models.TextChoices):
    OPEN = "open", "Waiting for payment"
    FAILED = "failed", "Payment failed or expired"
    PAID = "paid", "Paid and credited"


class TopUp(models.Model):
    """A resident buying coins: one Checkout Session, at most one credit."""

    # Forward-only order: a payment that failed can still succeed on a retry
    # (same session), a paid one never becomes failed.
    RANK = {TopUpStatus.OPEN: 0, TopUpStatus.FAILED: 1, TopUpStatus.PAID: 2}

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="topups")
    grid_slug = models.CharField(max_length=40)
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    coin_price_cents = models.PositiveIntegerField()
    # amount_cents * 1_000_000 // coin_price_cents, rounded down (shown before paying).
    coins_uk = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=TopUpStatus.choices, default=TopUpStatus.OPEN)
    checkout_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    checkout_url = models.URLField(max_length=2000, blank=True)
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    # What the ledger holds for this top-up: credited once, then taken back
    # (refunds, disputes) and returned (won disputes) by adjustments.
    credited_uk = models.BigIntegerField(default=0)
    taken_back_uk = models.BigIntegerField(default=0)
    adjustments = models.PositiveIntegerField(default=0)
    # The largest amount_refunded Stripe reported for the charge (cumulative).
    refunded_cents = models.PositiveIntegerField(default=0)
    failure_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(coins_uk__gte=0), name="topup_coins_non_negative"),
            models.CheckConstraint(
                condition=models.Q(taken_back_uk__gte=0, taken_back_uk__lte=models.F("credited_uk")),
                name="topup_taken_back_within_credit",
            ),
        ]

    def __str__(self) -> str:
        return f"top-up {self.id} ({self.status})"


class RefundStatus(models.TextChoices):
    REQUESTED = "requested", "Coins taken back, refund being sent"
    SUCCEEDED = "succeeded", "Refunded"
    FAILED = "failed", "Refund refused (coins returned)"


class Refund(models.Model):
    """An operator's refund of a whole top-up: coins first, then the money."""

    RANK = {RefundStatus.REQUESTED: 0, RefundStatus.SUCCEEDED: 1, RefundStatus.FAILED: 1}

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    topup = models.ForeignKey(TopUp, on_delete=models.PROTECT, related_name="refunds")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=RefundStatus.choices, default=RefundStatus.REQUESTED)
    stripe_refund_id = models.CharField(max_length=255, blank=True)
    operator = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)
    accept_negative = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            # One live refund per top-up: a second request while one is
            # pending or done is refused by the database as well.
            models.UniqueConstraint(
                fields=["topup"], condition=~models.Q(status="failed"), name="one_live_refund_per_topup"
            )
        ]

    def __str__(self) -> str:
        return f"refund {self.id} ({self.status})"


class DisputeStatus(models.TextChoices):
    OPEN = "open", "Open (coins held back, wallet frozen)"
    WON = "won", "Won (coins returned)"
    LOST = "lost", "Lost"


class Dispute(models.Model):
    """A card dispute on a top-up's charge; its id is Stripe's (``dp_...``)."""

    RANK = {DisputeStatus.OPEN: 0, DisputeStatus.WON: 1, DisputeStatus.LOST: 1}

    id = models.CharField(max_length=255, primary_key=True)
    topup = models.ForeignKey(TopUp, on_delete=models.PROTECT, related_name="disputes")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=DisputeStatus.choices)
    reason = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"dispute {self.id} ({self.status})"


class ConnectedAccount(models.Model):
    """A producer's Stripe Connect account (Express), for withdrawals."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="connected_account")
    stripe_account_id = models.CharField(max_length=255, unique=True)
    details_submitted = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.stripe_account_id


class WithdrawalStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    HELD = "held", "Coins held"
    TRANSFER_CREATED = "transfer_created", "Transferred to your account"
    PAYOUT_CREATED = "payout_created", "Paying out to your bank"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed (coins returned)"


class Withdrawal(models.Model):
    """A producer turning coins into money in their bank account.

    requested → held → transfer_created → payout_created → paid | failed.
    The Transfer's idempotency key is this id, so a retry after a crash
    cannot transfer twice. ``paid`` can still become ``failed``: Stripe may
    report a payout failed days after it was paid.
    """

    RANK = {
        WithdrawalStatus.REQUESTED: 0,
        WithdrawalStatus.HELD: 1,
        WithdrawalStatus.TRANSFER_CREATED: 2,
        WithdrawalStatus.PAYOUT_CREATED: 3,
        WithdrawalStatus.PAID: 4,
        WithdrawalStatus.FAILED: 5,
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawals")
    request_id = models.CharField(max_length=100, unique=True)
    amount_uk = models.BigIntegerField()
    # amount_uk * coin_price_cents // 1_000_000, rounded down (shown before asking).
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    coin_price_cents = models.PositiveIntegerField()
    stripe_account_id = models.CharField(max_length=255)
    status = models.CharField(max_length=20, choices=WithdrawalStatus.choices, default=WithdrawalStatus.REQUESTED)
    transfer_id = models.CharField(max_length=255, blank=True)
    payout_id = models.CharField(max_length=255, blank=True, db_index=True)
    reversal_id = models.CharField(max_length=255, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "updated_at"], name="withdrawal_status_updated")]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_uk__gt=0), name="withdrawal_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"withdrawal {self.id} ({self.status})"


class WebhookEvent(models.Model):
    """The inbox: every verified Stripe event, once, keyed by its id."""

    id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=100, db_index=True)
    account = models.CharField(max_length=255, blank=True, help_text="the connected account, for Connect events")
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Set while the event waits for its payment to be known (e.g. a dispute
    # delivered before the payment's own event); replayed when it is.
    waiting_for = models.CharField(max_length=255, blank=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class FakeObject(models.Model):
    """The local stand-in's store (``PAYMENTS_BACKEND=fake``): sessions,
    payment intents, accounts, transfers, payouts, refunds — as Stripe-shaped JSON."""

    id = models.CharField(max_length=64, primary_key=True)
    kind = models.CharField(max_length=40, db_index=True)
    # Like Stripe: a reused key returns the first object (with the same request).
    idempotency_key = models.CharField(max_length=300, unique=True, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    group = models.CharField(max_length=255, blank=True, db_index=True)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.id


class FakeEvent(models.Model):
    """An event the stand-in sends to the webhook, redelivered until it is taken."""

    id = models.CharField(max_length=64, primary_key=True)
    type = models.CharField(max_length=100)
    payload = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
