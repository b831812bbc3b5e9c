"""Grids, meters and what they reported, in the admin.

Grids and meters are created with ``manage.py grid_create`` / ``meter_add``
(which open their ledger accounts and issue the meter's secret); here an
operator adjusts a grid's rules and a meter's label, owner and flags.
Readings, rejections and decisions are records: read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from utility.ledger.admin import ReadOnlyModelAdmin
from utility.lib.money import format_uk

from .models import Grid, Meter, MeterDecision, Reading, RejectedReading
from .services import GRID_RULE_FIELDS, grid_rules_check


class GridAdminForm(forms.ModelForm):
    class Meta:
        model = Grid
        fields = ("name", *(name for name in GRID_RULE_FIELDS if name != "interval_s"), "currency")

    def clean(self) -> dict:
        cleaned = super().clean()
        rules = {name: cleaned[name] for name in GRID_RULE_FIELDS if cleaned.get(name) is not None}
        try:
            # The same checks as grid_create (fee_bp <= 10000, ...), as field errors.
            grid_rules_check(rules)
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned


@admin.register(Grid)
class GridAdmin(admin.ModelAdmin):
    form = GridAdminForm
    list_display = (
        "slug",
        "name",
        "interval_s",
        "tariff_uk_per_kwh",
        "fee_fixed_uk",
        "fee_bp",
        "credit_limit_uk",
        "settled_through",
    )
    search_fields = ("slug", "name")
    readonly_fields = (
        "slug",
        "interval_s",
        "started_at",
        "settled_through",
        "pool_account",
        "fee_account",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # manage.py grid_create opens the grid's accounts

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = ("public_id", "grid", "kind", "owner", "public", "active", "supply_state", "balance", "last_seen_at")
    list_filter = ("grid", "kind", "public", "active", "never_disconnect", "supply_state")
    search_fields = ("public_id", "label", "owner__username")
    list_select_related = ("grid", "owner", "account")
    raw_id_fields = ("owner",)
    exclude = ("secret_sealed", "secret_hash")
    readonly_fields = (
        "public_id",
        "grid",
        "kind",
        "account",
        "last_seq",
        "last_interval_start",
        "last_import_total_wh",
        "last_export_total_wh",
        "last_seen_at",
        "decision_seq",
        "supply_state",
        "created_at",
    )

    @admin.display(description="balance (k)", ordering="account__balance_uk")
    def balance(self, meter: Meter) -> str:
        return format_uk(meter.account.balance_uk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # manage.py meter_add issues the secret

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Reading)
class ReadingAdmin(ReadOnlyModelAdmin):
    list_display = ("meter", "interval_start", "import_wh", "export_wh", "seq", "received_at", "late", "settled_in")
    list_filter = ("late", "meter__grid")
    search_fields = ("meter__public_id",)
    list_select_related = ("meter",)
    date_hierarchy = "interval_start"
    show_full_result_count = False


@admin.register(RejectedReading)
class RejectedReadingAdmin(ReadOnlyModelAdmin):
    list_display = ("received_at", "reason", "grid_slug", "meter_public_id", "seq", "detail")
    list_filter = ("reason", "grid_slug")
    search_fields = ("meter_public_id", "topic", "detail")
    date_hierarchy = "received_at"
    show_full_result_count = False


@admin.register(MeterDecision)
class MeterDecisionAdmin(ReadOnlyModelAdmin):
    list_display = ("meter", "seq", "state", "reason", "balance_uk", "issued_at", "issued_by", "published")
    list_filter = ("state", "reason", "published", "issued_by")
    search_fields = ("meter__public_id", "reason", "issued_by")
    list_select_related = ("meter",)
    date_hierarchy = "issued_at"
