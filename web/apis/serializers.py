"""Output serializers shared by the resident and operator APIs. Money in
integer µk (``*_uk``), energy in integer Wh (``*_wh``); ``balance`` and the
like are the same amounts as display strings in coins."""

from __future__ import annotations

from rest_framework import serializers

from settlement.reports import line_fee_share_uk
from utility.lib.money import format_uk


class MeterPublicOut(serializers.Serializer):
    """What anyone signed in sees of a public meter (a street light)."""

    public_id = serializers.CharField()
    label = serializers.CharField()
    kind = serializers.CharField()
    balance_uk = serializers.IntegerField(source="account.balance_uk")


class MeterOut(serializers.Serializer):
    """A resident's own meter, with what its balance lasts (``MeterCard``)."""

    public_id = serializers.CharField()
    label = serializers.CharField()
    kind = serializers.CharField()
    public = serializers.BooleanField()
    active = serializers.BooleanField()
    grid = serializers.CharField(source="grid_slug")
    state = serializers.ChoiceField(choices=["connected", "disconnected", "low"])
    balance_uk = serializers.IntegerField()
    balance = serializers.SerializerMethodField()
    avg_cost_uk = serializers.IntegerField(help_text="recent average cost of one interval, µk")
    hours_left = serializers.IntegerField(allow_null=True, help_text="null: no recent use, it never runs out")

    def get_balance(self, card) -> str:
        return format_uk(card.balance_uk)


class OperatorMeterOut(serializers.Serializer):
    public_id = serializers.CharField()
    grid = serializers.CharField(source="grid.slug")
    kind = serializers.CharField()
    label = serializers.CharField()
    owner = serializers.CharField(source="owner.username", allow_null=True, default=None)
    public = serializers.BooleanField()
    active = serializers.BooleanField()
    never_disconnect = serializers.BooleanField()
    supply_state = serializers.CharField()
    balance_uk = serializers.IntegerField(source="account.balance_uk")
    decision_seq = serializers.IntegerField()
    last_seq = serializers.IntegerField(allow_null=True)
    last_interval_start = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReadingOut(serializers.Serializer):
    interval_start = serializers.DateTimeField()
    import_wh = serializers.IntegerField()
    export_wh = serializers.IntegerField()
    import_total_wh = serializers.IntegerField()
    export_total_wh = serializers.IntegerField()
    seq = serializers.IntegerField()
    received_at = serializers.DateTimeField()
    late = serializers.BooleanField()
    settled_in = serializers.DateTimeField(allow_null=True)


class LineOut(serializers.Serializer):
    """One meter's settlement line of one interval, with that interval's fee
    share (``settlement.reports``) and the grid's loss."""

    meter = serializers.CharField(source="meter.public_id")
    grid = serializers.CharField(source="run.grid.slug")
    interval_start = serializers.DateTimeField(source="run.interval_start")
    interval_end = serializers.DateTimeField(source="run.interval_end")
    import_wh = serializers.IntegerField()
    export_wh = serializers.IntegerField()
    paid_uk = serializers.IntegerField(source="debit_uk")
    earned_uk = serializers.IntegerField(source="credit_uk")
    fee_share_uk = serializers.SerializerMethodField()
    grid_loss_wh = serializers.IntegerField(source="run.loss_wh")
    grid_loss_bp = serializers.IntegerField(source="run.loss_bp", allow_null=True)

    def get_fee_share_uk(self, line) -> int:
        return line_fee_share_uk(line)


class DecisionOut(serializers.Serializer):
    seq = serializers.IntegerField()
    state = serializers.CharField()
    reason = serializers.CharField()
    balance_uk = serializers.IntegerField()
    issued_at = serializers.DateTimeField()
    issued_by = serializers.CharField()
    published = serializers.BooleanField()


class GridOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    interval_s = serializers.IntegerField()
    tariff_uk_per_kwh = serializers.IntegerField()
    fee_fixed_uk = serializers.IntegerField()
    fee_bp = serializers.IntegerField()
    credit_limit_uk = serializers.IntegerField()
    credit_grace_s = serializers.IntegerField()
    loss_alert_bp = serializers.IntegerField()
    settlement_grace_s = serializers.IntegerField()
    coin_price_cents = serializers.IntegerField()
    currency = serializers.CharField()
    started_at = serializers.DateTimeField()
    settled_through = serializers.DateTimeField(allow_null=True)


class RunOut(serializers.Serializer):
    id = serializers.IntegerField()
    grid = serializers.CharField(source="grid.slug")
    interval_start = serializers.DateTimeField()
    interval_end = serializers.DateTimeField()
    status = serializers.CharField()
    tariff_uk_per_kwh = serializers.IntegerField()
    carry_in_uk = serializers.IntegerField()
    pool_uk = serializers.IntegerField()
    fee_uk = serializers.IntegerField()
    credited_uk = serializers.IntegerField()
    carry_out_uk = serializers.IntegerField()
    import_wh = serializers.IntegerField()
    export_wh = serializers.IntegerField()
    loss_wh = serializers.IntegerField()
    loss_bp = serializers.IntegerField(allow_null=True)
    alerts = serializers.ListField(child=serializers.CharField())
    meter_count = serializers.IntegerField()
    late_reading_count = serializers.IntegerField()
    settled_at = serializers.DateTimeField(allow_null=True)


class TopUpOut(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    amount_cents = serializers.IntegerField()
    currency = serializers.CharField()
    coins_uk = serializers.IntegerField()
    checkout_url = serializers.CharField(help_text="pay here (Stripe Checkout, or the local stand-in)")
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)


class WithdrawalOut(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    amount_uk = serializers.IntegerField()
    amount_cents = serializers.IntegerField()
    currency = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ErrorBody(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class ErrorOut(serializers.Serializer):
    """Every error: ``{"error": {...}}`` (``web.apis.errors``)."""

    error = ErrorBody()
