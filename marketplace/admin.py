"""The market in the Django admin: read-only (trades move coins; they are
made through the pages, the API and the services, never edited here)."""

from django.contrib import admin

from .models import Bid, BuyerLimit, Contract, Delivery, Offer, PricePoint


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class BidInline(admin.TabularInline):
    model = Bid
    extra = 0
    can_delete = False
    fields = ("bidder", "buyer_meter", "price_uk_per_kwh", "amount_uk", "status", "placed_at", "released_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = ("pk", "grid", "seller_meter", "energy_wh", "start_price_uk_per_kwh", "ends_at", "status")
    list_filter = ("status", "grid")
    inlines = [BidInline]


@admin.register(BuyerLimit)
class BuyerLimitAdmin(ReadOnlyAdmin):
    list_display = ("pk", "grid", "buyer_meter", "period_start", "period_end", "max_price_uk_per_kwh", "active")
    list_filter = ("active", "grid")


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("interval_start", "seller_export_wh", "buyer_import_wh", "delivered_wh", "amount_uk", "breach", "payment")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Contract)
class ContractAdmin(ReadOnlyAdmin):
    list_display = ("pk", "grid", "kind", "seller_meter", "buyer_meter", "price_uk_per_kwh", "delivered_wh", "status")
    list_filter = ("kind", "status", "grid")
    search_fields = ("seller_meter__public_id", "buyer_meter__public_id")
    inlines = [DeliveryInline]


@admin.register(PricePoint)
class PricePointAdmin(ReadOnlyAdmin):
    list_display = ("grid", "interval_start", "tariff_uk_per_kwh", "market_uk_per_kwh", "market_wh", "published")
    list_filter = ("grid", "published")
