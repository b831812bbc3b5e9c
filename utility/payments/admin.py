"""Payments in the admin: to read. Changes go through services (a refund is
``manage.py topup_refund``; a failed webhook event can be processed again)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from utility import clock

from .models import (
    ConnectedAccount,
    Dispute,
    FakeEvent,
    FakeObject,
    Refund,
    TopUp,
    WebhookEvent,
    Withdrawal,
)
from .services import webhook_event_process


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "amount_cents", "currency", "coins_uk", "status", "taken_back_uk", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("id", "user__username", "payment_intent_id", "checkout_session_id", "charge_id")
    list_select_related = ("user",)


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "amount_uk", "amount_cents", "currency", "status", "updated_at")
    list_filter = ("status",)
    search_fields = ("id", "user__username", "transfer_id", "payout_id")
    list_select_related = ("user",)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "topup", "amount_cents", "status", "operator", "accept_negative", "created_at")
    list_filter = ("status",)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("id", "topup", "amount_cents", "status", "reason", "created_at", "closed_at")
    list_filter = ("status",)


@admin.register(ConnectedAccount)
class ConnectedAccountAdmin(ReadOnlyAdmin):
    list_display = ("user", "stripe_account_id", "details_submitted", "payouts_enabled", "updated_at")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "received_at", "processed_at", "attempts", "waiting_for", "short_error")
    list_filter = ("type", ("processed_at", admin.EmptyFieldListFilter))
    search_fields = ("id", "type", "waiting_for")
    actions = ["process_again"]

    @admin.display(description="error")
    def short_error(self, event: WebhookEvent) -> str:
        return event.error[:80]

    @admin.action(description="Process the selected events again (processed ones are skipped)")
    def process_again(self, request: HttpRequest, queryset) -> None:
        results = [webhook_event_process(pk, clock.now()).result for pk in queryset.values_list("pk", flat=True)]
        self.message_user(request, f"results: {', '.join(results) or 'none'}", messages.INFO)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The action needs it; the form itself stays read-only (no editable fields).
        return request.user.is_superuser

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(FakeObject)
class FakeObjectAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "group", "created_at")
    list_filter = ("kind",)


@admin.register(FakeEvent)
class FakeEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "created_at", "delivered_at", "attempts", "last_status")
