"""The market's REST API, under ``/api/market/`` (``market_api:``)."""

from django.urls import path

from . import apis

app_name = "market_api"

urlpatterns = [
    path("offers/", apis.OfferListApi.as_view(), name="offers"),
    path("offers/<int:offer_id>/", apis.OfferDetailApi.as_view(), name="offer"),
    path("offers/<int:offer_id>/bids/", apis.OfferBidApi.as_view(), name="offer_bid"),
    path("offers/<int:offer_id>/cancel/", apis.OfferCancelApi.as_view(), name="offer_cancel"),
    path("bids/", apis.BidListApi.as_view(), name="bids"),
    path("bids/<int:bid_id>/cancel/", apis.BidCancelApi.as_view(), name="bid_cancel"),
    path("limits/", apis.LimitListApi.as_view(), name="limits"),
    path("limits/<int:limit_id>/withdraw/", apis.LimitWithdrawApi.as_view(), name="limit_withdraw"),
    path("limits/<int:limit_id>/offers/", apis.LimitOfferApi.as_view(), name="limit_offer"),
    path("contracts/", apis.ContractListApi.as_view(), name="contracts"),
    path("contracts/<int:contract_id>/", apis.ContractDetailApi.as_view(), name="contract"),
    path("contracts/<int:contract_id>/deposit/", apis.ContractDepositApi.as_view(), name="contract_deposit"),
    path("prices/<slug:slug>/", apis.PriceHistoryApi.as_view(), name="prices"),
    path("ops/trades/", apis.TradesApi.as_view(), name="ops_trades"),
]
