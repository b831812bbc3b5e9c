"""Timed auctions on the real database: offers, bid holds and releases,
timing, ties, the reserve, and bad input that changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.models import Bid, BidStatus, Contract, ContractKind, ContractStatus, Offer, OfferStatus
from marketplace.services import (
    MarketError,
    auction_close,
    auctions_close_due,
    bid_cancel,
    bid_place,
    offer_cancel,
    offer_create,
)
from utility.ledger.models import Transaction
from utility.ledger.selectors import account_balance, ledger_problems

from .helpers import NOW, K, coins_give, hours, market_make, wallet_uk

ENDS = hours(1)  # the auction ends when the next interval starts


@pytest.fixture
def market(db):
    market = market_make()
    for name in ("carlos", "danny"):
        coins_give(market.users[name], 10 * K)
    return market


def offer_make(market, **changes) -> Offer:
    """Angel offers 2 kWh for [02:00, 04:00) from 0.5 k per kWh; bids until 01:00."""
    fields = dict(
        energy_wh=2_000, delivery_start=hours(2), delivery_end=hours(4), start_price_uk_per_kwh=500_000,
        ends_at=ENDS, now=NOW,
    )  # fmt: skip
    fields.update(changes)
    return offer_create(market.users["angel"], market.meters["angel"], **fields)


def bid(market, name: str, offer: Offer, price: int, at=NOW) -> Bid:
    return bid_place(market.users[name], offer.pk, market.meters[name], price, at)


def test_an_offer_opens_an_auction_with_its_own_escrow(market):
    offer = offer_make(market, reserve_price_uk_per_kwh=600_000)
    assert (offer.status, offer.energy_wh, offer.reserve_price_uk_per_kwh) == (OfferStatus.OPEN, 2_000, 600_000)
    assert offer.escrow_account.code == f"escrow:offer:{offer.pk}"
    assert offer.escrow_account.kind == "market_escrow"


def test_a_bid_holds_its_coins_and_an_outbid_one_gets_them_back(market):
    offer = offer_make(market)
    first = bid(market, "carlos", offer, 600_000)  # 2 kWh × 0.6 k = 1.2 k held
    assert (first.amount_uk, wallet_uk(market.users["carlos"])) == (1_200_000, 8_800_000)
    assert account_balance(offer.escrow_account_id) == 1_200_000

    bid(market, "danny", offer, 700_000)
    first.refresh_from_db()
    assert first.status == BidStatus.OUTBID and first.released_at == NOW
    assert wallet_uk(market.users["carlos"]) == 10 * K
    assert wallet_uk(market.users["danny"]) == 10 * K - 1_400_000
    assert account_balance(offer.escrow_account_id) == 1_400_000
    assert ledger_problems() == []


def test_raising_ones_own_bid_needs_only_the_difference(market):
    offer = offer_make(market)
    bid(market, "danny", offer, 4_000_000)  # holds 8 k of danny's 10 k
    bid(market, "danny", offer, 5_000_000)  # 10 k: possible only because the 8 k come back in the same movement
    assert wallet_uk(market.users["danny"]) == 0
    assert list(offer.bids.values_list("status", flat=True).order_by("pk")) == [BidStatus.OUTBID, BidStatus.STANDING]
    assert ledger_problems() == []


def test_cancelling_a_bid_releases_it(market):
    offer = offer_make(market)
    placed = bid(market, "carlos", offer, 600_000)
    cancelled = bid_cancel(market.users["carlos"], placed.pk, NOW + timedelta(minutes=1))
    assert cancelled.status == BidStatus.CANCELLED
    assert wallet_uk(market.users["carlos"]) == 10 * K
    assert account_balance(offer.escrow_account_id) == 0
    with pytest.raises(MarketError, match="not standing"):
        bid_cancel(market.users["carlos"], placed.pk, NOW + timedelta(minutes=2))
    with pytest.raises(MarketError, match="no such bid"):
        bid_cancel(market.users["danny"], placed.pk, NOW)  # not theirs


def test_the_highest_bid_at_the_end_wins_and_becomes_a_contract(market):
    offer = offer_make(market)
    bid(market, "carlos", offer, 600_000)
    winning = bid(market, "danny", offer, 650_000)

    contract = auction_close(offer.pk, ENDS)

    assert contract.kind == ContractKind.AUCTION and contract.status == ContractStatus.ACTIVE
    assert (contract.buyer, contract.buyer_meter, contract.seller_meter) == (
        market.users["danny"], market.meters["danny"], market.meters["angel"],
    )  # fmt: skip
    assert (contract.price_uk_per_kwh, contract.energy_wh, contract.escrow_account_id) == (
        650_000, 2_000, offer.escrow_account_id,
    )  # fmt: skip
    assert (contract.delivery_start, contract.delivery_end) == (hours(2), hours(4))
    winning.refresh_from_db()
    offer.refresh_from_db()
    assert (winning.status, offer.status, offer.closed_at) == (BidStatus.WON, OfferStatus.SOLD, ENDS)
    assert account_balance(offer.escrow_account_id) == 1_300_000  # exactly the winning hold


def test_equal_bids_stand_side_by_side_and_the_earliest_wins(market):
    offer = offer_make(market)
    early = bid(market, "carlos", offer, 600_000)
    late = bid(market, "danny", offer, 600_000, at=NOW + timedelta(minutes=5))
    assert {early.status, late.status} == {BidStatus.STANDING}

    contract = auction_close(offer.pk, ENDS)

    late.refresh_from_db()
    assert contract.buyer == market.users["carlos"]
    assert late.status == BidStatus.LOST and late.released_at == ENDS
    assert wallet_uk(market.users["danny"]) == 10 * K
    assert wallet_uk(market.users["carlos"]) == 10 * K - 1_200_000


def test_timing_no_bid_after_the_end_and_no_close_before_it(market):
    offer = offer_make(market)
    with pytest.raises(MarketError, match="ended"):
        bid(market, "carlos", offer, 600_000, at=ENDS)
    bid(market, "carlos", offer, 600_000, at=ENDS - timedelta(microseconds=1))
    with pytest.raises(MarketError, match="runs until"):
        auction_close(offer.pk, ENDS - timedelta(seconds=1))
    assert auctions_close_due(ENDS - timedelta(seconds=1)) == 0
    assert Offer.objects.get().status == OfferStatus.OPEN

    assert auctions_close_due(ENDS) == 1
    first = Contract.objects.get()
    # Closing again is a no-op that returns the same contract.
    assert auction_close(offer.pk, ENDS + timedelta(hours=1)) == first
    assert auctions_close_due(ENDS + timedelta(hours=1)) == 0
    assert Contract.objects.count() == 1
    assert ledger_problems() == []


def test_below_the_reserve_nothing_sells_and_every_hold_returns(market):
    offer = offer_make(market, reserve_price_uk_per_kwh=800_000)
    bid(market, "carlos", offer, 700_000)
    assert auction_close(offer.pk, ENDS) is None
    offer.refresh_from_db()
    assert offer.status == OfferStatus.UNSOLD
    assert Bid.objects.get().status == BidStatus.LOST
    assert wallet_uk(market.users["carlos"]) == 10 * K
    assert Contract.objects.count() == 0


def test_an_auction_without_bids_ends_unsold(market):
    offer = offer_make(market)
    assert auction_close(offer.pk, ENDS) is None
    assert Offer.objects.get().status == OfferStatus.UNSOLD


def test_the_seller_may_cancel_an_open_offer_and_every_bid_returns(market):
    offer = offer_make(market)
    bid(market, "carlos", offer, 600_000)
    cancelled = offer_cancel(market.users["angel"], offer.pk, NOW)
    assert cancelled.status == OfferStatus.CANCELLED
    assert wallet_uk(market.users["carlos"]) == 10 * K
    with pytest.raises(MarketError):
        offer_cancel(market.users["carlos"], offer.pk, NOW)  # not theirs
    with pytest.raises(MarketError, match="cancelled"):
        bid(market, "danny", offer, 900_000)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(energy_wh=0), "energy_wh"),
        (dict(energy_wh=2.5), "whole number"),
        (dict(start_price_uk_per_kwh=0), "start_price"),
        (dict(reserve_price_uk_per_kwh=400_000), "reserve"),
        (dict(delivery_start=hours(2) + timedelta(minutes=30)), "boundaries"),
        (dict(delivery_end=hours(2)), "end after"),
        (dict(ends_at=hours(3)), "no later than the delivery"),
        (dict(ends_at=NOW), "future"),
        (dict(delivery_start=hours(0), ends_at=hours(0)), "future"),
        (dict(delivery_end=hours(2) + timedelta(days=40)), "at most"),
        (dict(energy_wh=1, start_price_uk_per_kwh=499), "at least 1 µk"),  # 0.499 µk
    ],
)
def test_bad_offers_are_refused_and_change_nothing(market, changes, message):
    with pytest.raises(MarketError, match=message):
        offer_make(market, **changes)
    assert Offer.objects.count() == 0


def test_only_a_producing_meter_of_ones_own_can_be_offered(market):
    with pytest.raises(MarketError, match="consumer"):
        offer_create(market.users["carlos"], market.meters["carlos"], energy_wh=1, delivery_start=hours(2),
                     delivery_end=hours(3), start_price_uk_per_kwh=1, ends_at=ENDS, now=NOW)  # fmt: skip
    with pytest.raises(MarketError, match="not yours"):
        offer_create(market.users["carlos"], market.meters["angel"], energy_wh=1, delivery_start=hours(2),
                     delivery_end=hours(3), start_price_uk_per_kwh=1, ends_at=ENDS, now=NOW)  # fmt: skip
    assert Offer.objects.count() == 0


@pytest.mark.parametrize(
    ("who", "meter", "price", "message"),
    [
        ("carlos", "carlos", 499_999, "at least 500000"),  # below the start price
        ("carlos", "carlos", 0, "between"),
        ("carlos", "carlos", "600000", "whole number"),
        ("carlos", "danny", 600_000, "not yours"),
        ("angel", "angel", 600_000, "own offer"),
        ("carlos", "bennie", 600_000, "not yours"),
    ],
)
def test_bad_bids_are_refused_and_change_nothing(market, who, meter, price, message):
    offer = offer_make(market)
    before = {name: wallet_uk(user) for name, user in market.users.items()}
    with pytest.raises(MarketError, match=message):
        bid_place(market.users[who], offer.pk, market.meters[meter], price, NOW)
    assert Bid.objects.count() == 0
    assert {name: wallet_uk(user) for name, user in market.users.items()} == before


def test_a_bid_below_the_best_or_beyond_the_wallet_is_refused(market):
    offer = offer_make(market)
    bid(market, "carlos", offer, 700_000)
    with pytest.raises(MarketError, match="at least 700000"):
        bid(market, "danny", offer, 650_000)
    with pytest.raises(MarketError, match="cannot hold"):
        bid(market, "danny", offer, 5_000_001)  # 10,000,002 µk > 10 k
    with pytest.raises(MarketError, match="already bid"):
        bid(market, "carlos", offer, 700_000)
    assert Bid.objects.count() == 1
    assert wallet_uk(market.users["danny"]) == 10 * K
    assert Transaction.objects.filter(kind="market_bid").count() == 1
    with pytest.raises(MarketError, match="no such offer"):
        bid_place(market.users["danny"], 999_999, market.meters["danny"], 800_000, NOW)
