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
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.public_id


class Reading(models.Model):
    """One meter's energy for one interval ``[interval_start, +interval_s)``."""

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="readings")
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
            models.Index(fields=["meter", "-interval_start"], name="reading_meter_recent"),
        ]
