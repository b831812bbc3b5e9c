"""The ledger in the admin: to read, never to edit (corrections are new transactions)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from utility.lib.money import format_uk

from .models import Account, Entry, Transaction


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Operators may look; every change goes through a service."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReadOnlyTabularInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyModelAdmin):
    list_display = ("code", "kind", "owner", "balance", "created_at")
    list_filter = ("kind",)
    search_fields = ("code", "owner__username")
    list_select_related = ("owner",)
    ordering = ("code",)

    @admin.display(description="balance (k)", ordering="balance_uk")
    def balance(self, account: Account) -> str:
        return format_uk(account.balance_uk)


class EntryInline(ReadOnlyTabularInline):
    model = Entry
    fields = ("account", "amount_uk")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("account")


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyModelAdmin):
    list_display = ("idempotency_key", "kind", "memo", "created_at")
    list_filter = ("kind", "created_at")
    search_fields = ("idempotency_key", "memo")
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_inlines(self, request: HttpRequest, obj: Transaction | None):
        # Inline only small transactions; big ones are browsed as entries.
        if obj is not None and obj.entries.count() <= 200:
            return [EntryInline]
        return []


@admin.register(Entry)
class EntryAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "transaction", "account", "amount_uk")
    list_filter = ("account__kind",)
    search_fields = ("account__code", "transaction__idempotency_key")
    list_select_related = ("transaction", "account")
    raw_id_fields = ("transaction", "account")
    show_full_result_count = False
