"""Residents in the admin: Django's user admin with each resident's wallet
and meters, and every change an operator makes recorded in the audit log
(which fields changed, never a password)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest
from django.utils import timezone

from meters.models import Meter
from utility.audit.services import operator_action_record
from utility.ledger.admin import ReadOnlyTabularInline
from utility.ledger.models import Account, AccountKind
from utility.lib.money import format_uk

User = get_user_model()


class MeterInline(ReadOnlyTabularInline):
    model = Meter
    fk_name = "owner"
    fields = ("public_id", "grid", "kind", "public", "active", "supply_state")
    readonly_fields = fields
    show_change_link = True


admin.site.unregister(User)


@admin.register(User)
class ResidentAdmin(UserAdmin):
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "is_active", "wallet")
    inlines = [MeterInline]

    def get_queryset(self, request: HttpRequest):
        wallets = Account.objects.filter(owner=OuterRef("pk"), kind=AccountKind.WALLET).values("balance_uk")[:1]
        return super().get_queryset(request).annotate(wallet_uk=Subquery(wallets))

    @admin.display(description="wallet (k)", ordering="wallet_uk")
    def wallet(self, user) -> str:
        return "–" if user.wallet_uk is None else format_uk(user.wallet_uk)

    # Every change made here (the user form, the password form) ends in
    # log_addition / log_change: record it in the audit log as well. The
    # change message names the fields changed, never their values.
    def log_addition(self, request: HttpRequest, obj, message):
        self._record(request, "resident_add", obj, message)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj, message):
        self._record(request, "resident_change", obj, message)
        return super().log_change(request, obj, message)

    def _record(self, request: HttpRequest, action: str, obj, message) -> None:
        detail = {"change": message if isinstance(message, list | str) else str(message)}
        operator_action_record(
            request.user.get_username(), action, f"user:{obj.get_username()}", timezone.now(), "", detail
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # a resident's ledger entries keep their wallet: deactivate instead
