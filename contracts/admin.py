"""Read-only admin views of the mirror: records of what went on chain are
evidence, so the admin never edits them."""

from django.contrib import admin

from .models import AccountAddress, ChainBalance, ChainDeployment, MirrorBatch, MirrorDelivery, MirrorSettlement


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ChainDeployment)
class ChainDeploymentAdmin(ReadOnly):
    list_display = ["id", "backend", "chain_id", "address", "operator", "created_at"]


@admin.register(MirrorSettlement)
class MirrorSettlementAdmin(ReadOnly):
    list_display = [
        "settlement_id",
        "key",
        "mode",
        "digest",
        "line_count",
        "account_count",
        "batch_count",
        "created_at",
    ]
    search_fields = ["key", "digest"]


@admin.register(MirrorBatch)
class MirrorBatchAdmin(ReadOnly):
    list_display = ["id", "settlement", "batch_no", "root", "created_at"]
    exclude = ["items"]


@admin.register(MirrorDelivery)
class MirrorDeliveryAdmin(ReadOnly):
    list_display = [
        "batch",
        "deployment",
        "status",
        "nonce",
        "tx_hash",
        "gas_used",
        "attempts",
        "signed_at",
        "applied_at",
    ]
    list_filter = ["status", "deployment"]
    search_fields = ["tx_hash"]
    exclude = ["raw_tx"]


@admin.register(ChainBalance)
class ChainBalanceAdmin(ReadOnly):
    list_display = ["account", "address", "balance_uk", "through_entry_id", "deployment"]
    search_fields = ["address", "account__code"]


@admin.register(AccountAddress)
class AccountAddressAdmin(ReadOnly):
    list_display = ["account", "address", "registered_at"]
    search_fields = ["address", "account__code"]
