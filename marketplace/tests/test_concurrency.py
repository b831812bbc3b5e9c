"""Concurrent bids on one offer, each in its own thread and transaction:
exactly one winner, every other hold back in its wallet, no coin lost."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.models import Bid, BidStatus, Contract
from marketplace.services import MarketError, auction_close, bid_place, offer_create
from meters.tests.factories import meter_make, user_make
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.tests.helpers import run_concurrently

from .helpers import NOW, K, coins_give, hours, market_make, wallet_uk

BIDDERS = 8


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prices", ["distinct", "equal"])
def test_concurrent_bids_on_one_offer_leave_exactly_one_winner_and_lose_no_coin(prices):
    market = market_make("race")
    offer = offer_create(
        market.users["angel"], market.meters["angel"], energy_wh=1_000, delivery_start=hours(2),
        delivery_end=hours(3), start_price_uk_per_kwh=100_000, ends_at=hours(1), now=NOW,
    )  # fmt: skip
    people = []
    for i in range(BIDDERS):
        user = user_make(f"race-bidder-{i}")
        people.append((user, meter_make(market.grid, f"race-home-{i}", owner=user)))
        coins_give(user, 5 * K)

    def bidder(i: int):
        user, meter = people[i]
        price = 200_000 + (i * 10_000 if prices == "distinct" else 0)
        return bid_place(user, offer.pk, meter, price, NOW + timedelta(seconds=1))

    results = run_concurrently([lambda i=i: bidder(i) for i in range(BIDDERS)])

    errors = [result for result in results if isinstance(result, Exception)]
    # A bid that arrives after a higher one is refused (it would be outbid at
    # once); nothing else may go wrong.
    assert all(isinstance(error, MarketError) and "at least" in str(error) for error in errors), errors
    placed = [result for result in results if isinstance(result, Bid)]
    assert placed, "at least the first bid in must stand"

    contract = auction_close(offer.pk, hours(1))

    assert Contract.objects.count() == 1
    won = Bid.objects.filter(status=BidStatus.WON)
    assert won.count() == 1 and won.get().bidder == contract.buyer
    assert not Bid.objects.filter(status=BidStatus.STANDING).exists()
    best = max(bid.price_uk_per_kwh for bid in placed)
    assert contract.price_uk_per_kwh == best
    if prices == "equal":
        assert won.get().pk == min(bid.pk for bid in placed)  # the earliest of the equal bids
    # Every coin is where it should be: the winner's hold in escrow, the rest home.
    held = account_balance(offer.escrow_account_id)
    assert held == won.get().amount_uk
    assert sum(wallet_uk(user) for user, _ in people) + held == BIDDERS * 5 * K
    assert ledger_problems() == []
