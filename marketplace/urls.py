"""The market's pages, under ``/market/`` (``market:``)."""

from django.urls import path

from . import views

app_name = "market"

urlpatterns = [
    path("", views.market_page, name="market"),
    path("offers/new/", views.offer_new, name="offer_new"),
    path("offers/<int:offer_id>/", views.offer_page, name="offer"),
    path("offers/<int:offer_id>/cancel/", views.offer_cancel_view, name="offer_cancel"),
    path("bids/<int:bid_id>/cancel/", views.bid_cancel_view, name="bid_cancel"),
    path("limits/new/", views.limits_new, name="limits_new"),
    path("limits/<int:limit_id>/offer/", views.limit_offer, name="limit_offer"),
    path("limits/<int:limit_id>/withdraw/", views.limits_withdraw_view, name="limits_withdraw"),
    path("contracts/<int:contract_id>/", views.contract_page, name="contract"),
    path("contracts/<int:contract_id>/deposit/", views.contract_deposit, name="contract_deposit"),
    path("operator/", views.operator_trades, name="operator"),
]
