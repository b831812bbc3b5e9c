"""What each settlement did: one run per grid and interval, one line per meter."""

from __future__ import annotations

from django.db import models

from meters.models import Grid, Meter
from utility.ledger.models import Transaction


class RunStatus(models.TextChoices):
    OPEN = "open", "Open"
    SETTLED = "settled", "Settled"


class SettlementRun(models.Model):
    """The settlement of ``[interval_start, interval_end)`` on one grid."""

    grid = models.ForeignKey(Grid, on_delete=models.PROTECT, related_name="settlement_runs")
    interval_start = models.DateTimeField()
    interval_end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.OPEN)
    tariff_uk_per_kwh = models.BigIntegerField(default=0)
    carry_in_uk = models.BigIntegerField(default=0)
    pool_uk = models.BigIntegerField(default=0)
    fee_uk = models.BigIntegerField(default=0)
    credited_uk = models.BigIntegerField(default=0)
    carry_out_uk = models.BigIntegerField(default=0)
    import_wh = models.BigIntegerField(default=0)
    export_wh = models.BigIntegerField(default=0)
    loss_wh = models.BigIntegerField(default=0)
    loss_bp = models.IntegerField(null=True, blank=True)
    alerts = models.JSONField(default=list, blank=True)
    meter_count = models.PositiveIntegerField(default=0)
    late_reading_count = models.PositiveIntegerField(default=0)
    transaction = models.OneToOneField(Transaction, null=True, blank=True, on_delete=models.PROTECT)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["grid", "interval_start"], name="one_run_per_grid_interval")]
        indexes = [models.Index(fields=["grid", "status", "interval_start"], name="run_grid_status")]

    def __str__(self) -> str:
        return f"{self.grid.slug} {self.interval_start:%Y-%m-%d %H:%M}Z"


class SettlementLine(models.Model):
    """One meter's share of a run: what it imported and paid, exported and earned."""

    # Covered by one_line_per_run_meter (run, meter) and line_meter_run (meter, run).
    # Referential integrity per statement, not per row (migration 0003).
    run = models.ForeignKey(
        SettlementRun, on_delete=models.PROTECT, related_name="lines", db_index=False, db_constraint=False
    )
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="settlement_lines", db_index=False, db_constraint=False
    )
    import_wh = models.BigIntegerField()
    export_wh = models.BigIntegerField()
    debit_uk = models.BigIntegerField()
    credit_uk = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "meter"], name="one_line_per_run_meter")]
        indexes = [models.Index(fields=["meter", "run"], name="line_meter_run")]

    def __str__(self) -> str:
        return f"line {self.pk} of run {self.run_id}"
