"""Grids, their meters, and what the meters report.

Energy in integer Wh, money in integer µk, tariffs in µk per kWh, shares in
basis points, times UTC-aware.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from utility.ledger.models import Account


class Grid(models.Model):
    """One community microgrid and the rules its operator set."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=120)
    interval_s = models.PositiveIntegerField(default=3600, validators=[MinValueValidator(60)])
    tariff_uk_per_kwh = models.BigIntegerField(default=1_000_000, validators=[MinValueValidator(0)])
    fee_fixed_uk = models.BigIntegerField(default=10_000, validators=[MinValueValidator(0)])
    fee_bp = models.PositiveIntegerField(default=0)
    # How far below zero a meter account may go (energy already delivered in an
    # interval cannot be taken back); a positive number of µk of allowed debt.
    credit_limit_uk = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    # How long a meter may stay past its credit limit (warned) before it is
    # disconnected; 0: at once (meters.prepaid).
    credit_grace_s = models.PositiveIntegerField(default=0, db_default=0)
    loss_alert_bp = models.PositiveIntegerField(default=1_500)
    settlement_grace_s = models.PositiveIntegerField(default=600)
    coin_price_cents = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    currency = models.CharField(max_length=3, default="usd")
    # Settlement starts with the interval containing this instant...
    started_at = models.DateTimeField()
    # ...and has settled every interval before this instant (None: none yet).
    settled_through = models.DateTimeField(null=True, blank=True)
    pool_account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="pool_of")
    fee_account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="fee_of")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class MeterKind(models.TextChoices):
    CONSUMER = "consumer", "Consumer"
    PRODUCER = "producer", "Producer"
    PROSUMER = "prosumer", "Prosumer"


METER_ID_VALIDATOR = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$", "letters, digits, - and _ (max 40)")


class Meter(models.Model):
    """A smart meter. Its public id is also its MQTT username."""

    grid = models.ForeignKey(Grid, on_delete=models.PROTECT, related_name="meters")
    public_id = models.CharField(max_length=40, unique=True, validators=[METER_ID_VALIDATOR])
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="meters"
    )
    kind = models.CharField(max_length=10, choices=MeterKind.choices)
    public = models.BooleanField(default=False, help_text="Street lights: balance visible to all")
    label = models.CharField(max_length=120, blank=True)
    account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="meter")
    # The secret keys every reading's HMAC, so it must be recoverable: it is
    # kept sealed (AES-GCM, METER_SECRET_KEY); the hash is Mosquitto's PBKDF2
    # form for the broker's password file. The plain secret is shown once.
    secret_sealed = models.TextField()
    secret_hash = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    # Operators mark meters that must never be cut (a clinic, a street light).
    never_disconnect = models.BooleanField(default=False)
    # Ingest state: the last accepted reading, so verification needs no scan.
    last_seq = models.BigIntegerField(null=True, blank=True)
    last_interval_start = models.DateTimeField(null=True, blank=True)
    last_import_total_wh = models.BigIntegerField(null=True, blank=True)
    last_export_total_wh = models.BigIntegerField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Decisions: the last seq issued, and the state the meter was last told.
    decision_seq = models.BigIntegerField(default=0)
    supply_state = models.CharField(max_length=10, default="connect")
    # The reason of the decision ``decision_seq`` ("" before the first), kept
    # here so deciding for a whole grid needs no join with every decision.
    decision_reason = models.CharField(max_length=60, blank=True, default="", db_default="")
    # Since when the meter has been seen past its grid's credit limit (None:
    # it is not): the credit grace runs from here (meters.prepaid).
    overdrawn_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.public_id


class Reading(models.Model):
    """One meter's energy for one interval ``[interval_start, +interval_s)``."""

    # Covered by one_reading_per_meter_interval (meter, interval_start), which
    # also serves "latest readings of a meter" scanned backwards.
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="readings", db_index=False)
    interval_start = models.DateTimeField()
    import_wh = models.BigIntegerField(validators=[MinValueValidator(0)])
    export_wh = models.BigIntegerField(validators=[MinValueValidator(0)])
    import_total_wh = models.BigIntegerField(validators=[MinValueValidator(0)])
    export_total_wh = models.BigIntegerField(validators=[MinValueValidator(0)])
    v_min_dv = models.IntegerField(null=True, blank=True, help_text="Lowest voltage, decivolts")
    v_max_dv = models.IntegerField(null=True, blank=True, help_text="Highest voltage, decivolts")
    seq = models.BigIntegerField()
    received_at = models.DateTimeField()
    # Arrived after its interval was settled: it is settled in the next open one.
    late = models.BooleanField(default=False)
    # Start of the interval whose settlement took this reading (None: not yet).
    settled_in = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "interval_start"], name="one_reading_per_meter_interval"),
            models.CheckConstraint(
                condition=models.Q(import_wh__gte=0, export_wh__gte=0), name="reading_energy_non_negative"
            ),
        ]
        indexes = [
            models.Index(
                fields=["interval_start"], condition=models.Q(settled_in__isnull=True), name="reading_unsettled"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} @ {self.interval_start:%Y-%m-%d %H:%M}Z"


class RejectedReading(models.Model):
    """A message the ingest refused, kept (bounded) for operators to see."""

    topic = models.CharField(max_length=200)
    grid_slug = models.CharField(max_length=40, blank=True)
    meter_public_id = models.CharField(max_length=40, blank=True, db_index=True)
    seq = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=40, db_index=True)
    detail = models.CharField(max_length=300, blank=True)
    payload = models.TextField(help_text="Truncated to 4 KiB")
    received_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.reason}: {self.topic}"


class DecisionState(models.TextChoices):
    CONNECT = "connect", "Connect"
    DISCONNECT = "disconnect", "Disconnect"


class MeterDecision(models.Model):
    """Every decision sent to a meter: who or what decided, why, and when."""

    # Covered by one_decision_per_meter_seq (meter, seq). Referential
    # integrity per statement, not per row (migration 0005).
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="decisions", db_index=False, db_constraint=False
    )
    seq = models.BigIntegerField()
    state = models.CharField(max_length=10, choices=DecisionState.choices)
    reason = models.CharField(max_length=60)
    balance_uk = models.BigIntegerField()
    issued_at = models.DateTimeField()
    issued_by = models.CharField(max_length=150, default="system", help_text="operator username or 'system'")
    payload = models.JSONField(help_text="The signed message as published")
    published = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["meter", "seq"], name="one_decision_per_meter_seq")]
        indexes = [models.Index(fields=["meter"], condition=models.Q(published=False), name="decision_unpublished")]

    def __str__(self) -> str:
        return f"{self.meter_id} #{self.seq} {self.state} ({self.reason})"


class IngestCounter(models.Model):
    """How many readings the ingest accepted, found duplicate or rejected, per
    reason, since the database was created. Kept in the database (not in the
    ingest's memory) so the counts survive restarts and the web process that
    serves ``/metrics`` sees what the ingest process counted."""

    status = models.CharField(max_length=10)
    reason = models.CharField(max_length=40, blank=True, help_text="'' or 'late' for accepted readings")
    count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["status", "reason"], name="one_ingest_counter_per_outcome")]

    def __str__(self) -> str:
        return f"{self.status}/{self.reason or '-'}: {self.count}"
