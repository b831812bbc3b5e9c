"""Settlement runs and their lines, in the admin: records, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from utility.ledger.admin import ReadOnlyModelAdmin
from utility.lib.money import format_uk

from .models import SettlementLine, SettlementRun


@admin.register(SettlementRun)
class SettlementRunAdmin(ReadOnlyModelAdmin):
    list_display = (
        "grid",
        "interval_start",
        "status",
        "meter_count",
        "import_wh",
        "export_wh",
        "loss_bp",
        "pool",
        "fee",
        "credited",
        "carry_out",
        "alerts",
        "lines_link",
    )
    list_filter = ("grid", "status")
    date_hierarchy = "interval_start"
    list_select_related = ("grid",)
    search_fields = ("grid__slug",)

    @admin.display(description="pool (k)", ordering="pool_uk")
    def pool(self, run: SettlementRun) -> str:
        return format_uk(run.pool_uk)

    @admin.display(description="fee (k)", ordering="fee_uk")
    def fee(self, run: SettlementRun) -> str:
        return format_uk(run.fee_uk)

    @admin.display(description="credited (k)", ordering="credited_uk")
    def credited(self, run: SettlementRun) -> str:
        return format_uk(run.credited_uk)

    @admin.display(description="carry out (k)", ordering="carry_out_uk")
    def carry_out(self, run: SettlementRun) -> str:
        return format_uk(run.carry_out_uk)

    @admin.display(description="lines")
    def lines_link(self, run: SettlementRun) -> str:
        # A run may have 100,000 lines: link to them rather than inline them.
        url = reverse("admin:settlement_settlementline_changelist") + f"?run__id__exact={run.pk}"
        return format_html('<a href="{}">{} lines</a>', url, run.meter_count)


@admin.register(SettlementLine)
class SettlementLineAdmin(ReadOnlyModelAdmin):
    list_display = ("run", "meter", "import_wh", "export_wh", "debit_uk", "credit_uk")
    list_filter = ("run__grid",)
    search_fields = ("meter__public_id",)
    list_select_related = ("run__grid", "meter")
    raw_id_fields = ("run", "meter")
    show_full_result_count = False
