"""Timed auctions: a producer offers energy, residents bid, the highest bid
when the timer ends wins (ties: the earliest), and the result is a contract.

A bid holds the whole offer's price (``energy_cost_uk(energy_wh, price)``)
in the offer's escrow; a bid that is outbid, cancelled or loses gets it back.
Every change to an offer's bids happens under the offer's row lock, so
concurrent bids are placed one after the other: exactly one winner, no coin
lost or made. All the coins one bid moves (its hold, and the holds it
outbids) go in one ledger transaction, so its accounts are locked once, in
the ledger's global order (no deadlock between bids on different offers).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from meters.models import Grid, Meter
from utility.ledger.services import InsufficientFunds, transaction_post, wallet_ensure
from utility.lib.timeutil import ensure_utc, format_utc

from ..domain import StandingBid, auction_winner, energy_cost_uk
from ..models import Bid, BidStatus, Contract, ContractKind, ContractStatus, Offer, OfferStatus
from .common import (
    MAX_ENERGY_WH,
    MAX_PRICE_UK_PER_KWH,
    MarketError,
    check_int,
    check_trader,
    check_window,
    escrow_for,
    meter_for_trade,
)


def offer_create(
    seller,
    seller_meter: Meter,
    *,
    energy_wh: int,
    delivery_start: datetime,
    delivery_end: datetime,
    start_price_uk_per_kwh: int,
    ends_at: datetime,
    now: datetime,
    reserve_price_uk_per_kwh: int | None = None,
) -> Offer:
    """Put ``energy_wh`` Wh from the seller's own producing meter up for
    auction until ``ends_at``, to be delivered in ``[delivery_start,
    delivery_end)`` (grid interval boundaries, after the auction ends).

    Bids start at ``start_price_uk_per_kwh`` (µk per kWh, ≥ 1); with a
    ``reserve_price_uk_per_kwh`` (≥ the start price) a best bid below it
    sells nothing. Raises ``MarketError``; nothing is written then.
    """
    check_trader(seller)
    meter = meter_for_trade(seller, seller_meter, selling=True)
    grid = Grid.objects.get(pk=meter.grid_id)
    check_int("energy_wh", energy_wh, minimum=1, maximum=MAX_ENERGY_WH)
    check_int("start_price_uk_per_kwh", start_price_uk_per_kwh, minimum=1, maximum=MAX_PRICE_UK_PER_KWH)
    if reserve_price_uk_per_kwh is not None:
        check_int("reserve_price_uk_per_kwh", reserve_price_uk_per_kwh, minimum=1, maximum=MAX_PRICE_UK_PER_KWH)
        if reserve_price_uk_per_kwh < start_price_uk_per_kwh:
            raise MarketError("the reserve price cannot be below the start price")
    if energy_cost_uk(energy_wh, start_price_uk_per_kwh) < 1:
        raise MarketError("the offer must be worth at least 1 µk at its start price")
    now = ensure_utc(now)
    check_window(grid, delivery_start, delivery_end, now)
    if not isinstance(ends_at, datetime) or ends_at.tzinfo is None:
        raise MarketError("the auction's end must be a time with a time zone")
    if not now < ends_at <= delivery_start:
        raise MarketError("the auction must end in the future and no later than the delivery starts")
    with transaction.atomic():
        offer = Offer.objects.create(
            grid=grid,
            seller=seller,
            seller_meter=meter,
            energy_wh=energy_wh,
            delivery_start=delivery_start,
            delivery_end=delivery_end,
            start_price_uk_per_kwh=start_price_uk_per_kwh,
            reserve_price_uk_per_kwh=reserve_price_uk_per_kwh,
            ends_at=ends_at,
            created_at=now,
        )
        offer.escrow_account = escrow_for("offer", offer.pk)
        offer.save(update_fields=["escrow_account"])
    return offer


def _offer_locked(offer_id: object) -> Offer:
    if type(offer_id) is not int:
        raise MarketError("no such offer")
    offer = Offer.objects.select_for_update().filter(pk=offer_id).first()
    if offer is None:
        raise MarketError("no such offer")
    return offer


def _check_open(offer: Offer, now: datetime) -> None:
    if offer.status != OfferStatus.OPEN:
        raise MarketError(f"the auction of offer {offer.pk} is {offer.get_status_display().lower()}")
    if now >= offer.ends_at:
        raise MarketError(f"the auction of offer {offer.pk} ended at {format_utc(offer.ends_at)}")


def _release_legs(offer: Offer, bids: list[Bid]) -> list[tuple[int, int]]:
    """Ledger legs that give each bid's hold back to its bidder's wallet."""
    legs = []
    for bid in bids:
        legs += [(offer.escrow_account_id, -bid.amount_uk), (wallet_ensure(bid.bidder).pk, bid.amount_uk)]
    return legs


def _release(offer: Offer, bids: list[Bid], status: str, now: datetime) -> None:
    Bid.objects.filter(pk__in=[bid.pk for bid in bids]).update(status=status, released_at=now)


def bid_place(bidder, offer_id: int, buyer_meter: Meter, price_uk_per_kwh: int, now: datetime) -> Bid:
    """Bid ``price_uk_per_kwh`` for the whole of an open offer, to be
    delivered to the bidder's own ``buyer_meter``.

    Holds ``energy_cost_uk(energy_wh, price)`` µk from the bidder's wallet (it
    may not go below zero) and releases every standing bid below this price
    (outbid). A bid equal to the best stands beside it (the earlier wins); a
    bid below the best, or below the start price, is refused. Raises
    ``MarketError``; nothing is written then.
    """
    check_trader(bidder)
    check_int("price_uk_per_kwh", price_uk_per_kwh, minimum=1, maximum=MAX_PRICE_UK_PER_KWH)
    now = ensure_utc(now)
    with transaction.atomic():
        offer = _offer_locked(offer_id)
        _check_open(offer, now)
        if offer.seller_id == bidder.pk:
            raise MarketError("you cannot bid on your own offer")
        meter = meter_for_trade(bidder, buyer_meter, selling=False, grid=offer.grid)
        standing = list(offer.bids.filter(status=BidStatus.STANDING).select_related("bidder"))
        best = max((bid.price_uk_per_kwh for bid in standing), default=offer.start_price_uk_per_kwh)
        if price_uk_per_kwh < best:
            raise MarketError(f"bid at least {best} µk per kWh (the {'best bid' if standing else 'start price'})")
        if any(bid.bidder_id == bidder.pk and bid.price_uk_per_kwh == price_uk_per_kwh for bid in standing):
            raise MarketError(f"you already bid {price_uk_per_kwh} µk per kWh on this offer")
        amount_uk = energy_cost_uk(offer.energy_wh, price_uk_per_kwh)
        if amount_uk < 1:  # cannot happen above a valid start price; never a zero hold
            raise MarketError("a bid must be worth at least 1 µk")
        bid = Bid.objects.create(
            offer=offer, bidder=bidder, buyer_meter=meter, price_uk_per_kwh=price_uk_per_kwh,
            amount_uk=amount_uk, placed_at=now,
        )  # fmt: skip
        outbid = [other for other in standing if other.price_uk_per_kwh < price_uk_per_kwh]
        wallet = wallet_ensure(bidder)
        legs = [(wallet.pk, -amount_uk), (offer.escrow_account_id, amount_uk), *_release_legs(offer, outbid)]
        try:
            transaction_post(
                f"bid:{bid.pk}", "market_bid", legs, memo=f"bid {bid.pk} on offer {offer.pk}", floors_uk={wallet.pk: 0}
            )
        except InsufficientFunds as exc:
            raise MarketError(f"your wallet cannot hold {amount_uk} µk for this bid ({exc})") from exc
        _release(offer, outbid, BidStatus.OUTBID, now)
    return bid


def bid_cancel(bidder, bid_id: object, now: datetime) -> Bid:
    """Withdraw one's own standing bid while the auction is open; its hold
    goes back to the wallet. Raises ``MarketError``; nothing is written then."""
    now = ensure_utc(now)
    if type(bid_id) is not int:
        raise MarketError("no such bid")
    with transaction.atomic():
        found = Bid.objects.filter(pk=bid_id, bidder_id=getattr(bidder, "pk", None)).values_list("offer_id", flat=True)
        if not found:
            raise MarketError("no such bid of yours")
        offer = _offer_locked(found[0])
        bid = Bid.objects.select_related("bidder").get(pk=bid_id)
        _check_open(offer, now)
        if bid.status != BidStatus.STANDING:
            raise MarketError(f"bid {bid.pk} is {bid.get_status_display().lower()}, not standing")
        transaction_post(f"bid:{bid.pk}:cancel", "market_bid_release", _release_legs(offer, [bid]))
        _release(offer, [bid], BidStatus.CANCELLED, now)
        bid.refresh_from_db()
    return bid


def offer_cancel(seller, offer_id: object, now: datetime) -> Offer:
    """The seller withdraws an open offer; every standing bid is released."""
    now = ensure_utc(now)
    with transaction.atomic():
        offer = _offer_locked(offer_id)
        if offer.seller_id != getattr(seller, "pk", None):
            raise MarketError("no such offer of yours")
        _check_open(offer, now)
        standing = list(offer.bids.filter(status=BidStatus.STANDING).select_related("bidder"))
        if standing:
            transaction_post(f"offer:{offer.pk}:cancel", "market_bid_release", _release_legs(offer, standing))
        _release(offer, standing, BidStatus.CANCELLED, now)
        Offer.objects.filter(pk=offer.pk).update(status=OfferStatus.CANCELLED, closed_at=now)
        offer.refresh_from_db()
    return offer


def auction_close(offer_id: int, now: datetime) -> Contract | None:
    """Close an auction whose timer ended: the highest standing bid (ties:
    the earliest placed) at or above the reserve wins and becomes a contract
    paid from its hold; every other standing bid is released.

    Idempotent: an offer already closed returns its contract (or None).
    Raises ``MarketError`` before ``ends_at``.
    """
    now = ensure_utc(now)
    with transaction.atomic():
        offer = _offer_locked(offer_id)
        if offer.status != OfferStatus.OPEN:
            return Contract.objects.filter(offer=offer).first()
        if now < offer.ends_at:
            raise MarketError(f"the auction of offer {offer.pk} runs until {format_utc(offer.ends_at)}")
        standing = list(offer.bids.filter(status=BidStatus.STANDING).select_related("bidder").order_by("pk"))
        # Bids are created under the offer's lock, so id order is the order they were placed in.
        views = [StandingBid(bid.pk, bid.price_uk_per_kwh, bid.pk) for bid in standing]
        chosen = auction_winner(views, offer.reserve_price_uk_per_kwh)
        winner = next((bid for bid in standing if chosen is not None and bid.pk == chosen.bid_id), None)
        losers = [bid for bid in standing if bid is not winner]
        if losers:
            transaction_post(f"offer:{offer.pk}:close", "market_bid_release", _release_legs(offer, losers))
        _release(offer, losers, BidStatus.LOST, now)
        contract = None if winner is None else _contract_from(offer, winner, now)
        status = OfferStatus.UNSOLD if winner is None else OfferStatus.SOLD
        Offer.objects.filter(pk=offer.pk).update(status=status, closed_at=now)
    return contract


def _contract_from(offer: Offer, winner: Bid, now: datetime) -> Contract:
    """The won auction as a contract: prepaid by the winning hold, which
    stays in the offer's escrow and pays the seller as settlement measures
    delivery (whatever is not delivered goes back to the buyer at the end)."""
    Bid.objects.filter(pk=winner.pk).update(status=BidStatus.WON)
    return Contract.objects.create(
        grid_id=offer.grid_id,
        kind=ContractKind.AUCTION,
        seller_id=offer.seller_id,
        seller_meter_id=offer.seller_meter_id,
        buyer_id=winner.bidder_id,
        buyer_meter_id=winner.buyer_meter_id,
        price_uk_per_kwh=winner.price_uk_per_kwh,
        energy_wh=offer.energy_wh,
        wh_per_interval=offer.energy_wh,  # no per-interval cap: delivered as soon as both meters measure it
        delivery_start=offer.delivery_start,
        delivery_end=offer.delivery_end,
        status=ContractStatus.ACTIVE,
        escrow_account_id=offer.escrow_account_id,
        offer=offer,
        created_at=now,
        activated_at=now,
    )


def auctions_close_due(now: datetime) -> int:
    """Close every open auction whose timer has ended; returns how many."""
    now = ensure_utc(now)
    due = list(Offer.objects.filter(status=OfferStatus.OPEN, ends_at__lte=now).values_list("pk", flat=True))
    for offer_id in due:
        auction_close(offer_id, now)
    return len(due)
