"""Writes of the market (``<entity>_<action>``); see each module."""

from .auctions import auction_close, auctions_close_due, bid_cancel, bid_place, offer_cancel, offer_create
from .bilateral import OfferRefused, bilateral_offer, deposit_pay, limits_publish, limits_withdraw
from .common import MarketError
from .delivery import DeliveryOutcome, contract_payment_take, contracts_review, deliveries_record
from .price import market_price_publish, market_quote
from .tick import MarketTick, market_tick

__all__ = [
    "DeliveryOutcome",
    "MarketError",
    "MarketTick",
    "OfferRefused",
    "auction_close",
    "auctions_close_due",
    "bid_cancel",
    "bid_place",
    "bilateral_offer",
    "contract_payment_take",
    "contracts_review",
    "deliveries_record",
    "deposit_pay",
    "limits_publish",
    "limits_withdraw",
    "market_price_publish",
    "market_quote",
    "market_tick",
    "offer_cancel",
    "offer_create",
]
