"""The market pages: they render, each form does its one thing, and bad
input is shown again with a clear error (400) and changes nothing."""

from __future__ import annotations

import pytest
from django.test import Client

from marketplace.models import Bid, BuyerLimit, Contract, ContractStatus, Offer
from marketplace.services import bid_place, limits_publish, offer_create
from meters.tests.factories import user_make
from utility import clock

from .helpers import NOW, K, coins_give, hours, market_make, wallet_uk

FORM_TIME = "%Y-%m-%dT%H:%M"


@pytest.fixture
def market(db):
    clock.clock_install(lambda: NOW)
    yield market_make("web")
    clock.clock_reset()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def an_offer(market) -> Offer:
    return offer_create(market.users["angel"], market.meters["angel"], energy_wh=2_000, delivery_start=hours(2),
                        delivery_end=hours(4), start_price_uk_per_kwh=500_000, ends_at=hours(1), now=NOW)  # fmt: skip


def test_the_market_page_shows_open_auctions_with_a_countdown_and_ones_own_trades(market):
    offer = an_offer(market)
    coins_give(market.users["carlos"], 5 * K)
    bid_place(market.users["carlos"], offer.pk, market.meters["carlos"], 600_000, NOW)

    page = client_for(market.users["carlos"]).get("/market/")

    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="/market/offers/{offer.pk}/"' in html
    assert 'class="countdown" data-ends="2026-01-01T01:00:00+00:00"' in html
    assert "0.600000" in html  # the best bid, and Carlos's own bid
    assert "My bids" in html


def test_offering_energy_through_the_form(market):
    angel = client_for(market.users["angel"])
    assert angel.get("/market/offers/new/").status_code == 200
    form = {"meter": "web-angel", "energy": "2.5", "start": hours(2).strftime(FORM_TIME), "intervals": "2",
            "start_price": "0.5", "reserve_price": "", "runs_minutes": "30"}  # fmt: skip

    bad = angel.post("/market/offers/new/", {**form, "energy": "2.5x"})
    assert bad.status_code == 400 and "is not a number of kWh" in bad.content.decode()
    late = angel.post("/market/offers/new/", {**form, "runs_minutes": "600"})
    assert late.status_code == 400 and "no later than the delivery starts" in late.content.decode()
    assert Offer.objects.count() == 0

    done = angel.post("/market/offers/new/", form)
    offer = Offer.objects.get()
    assert done.status_code == 302 and done.url == f"/market/offers/{offer.pk}/"
    assert (offer.energy_wh, offer.start_price_uk_per_kwh, offer.delivery_end) == (2_500, 500_000, hours(4))


def test_bidding_through_the_form(market):
    offer = an_offer(market)
    carlos = client_for(market.users["carlos"])
    assert carlos.get(f"/market/offers/{offer.pk}/").status_code == 200

    broke = carlos.post(f"/market/offers/{offer.pk}/", {"meter": "web-carlos", "price": "0.6"})
    assert broke.status_code == 400 and "cannot hold" in broke.content.decode()
    silly = carlos.post(f"/market/offers/{offer.pk}/", {"meter": "web-carlos", "price": "0.0000001"})
    assert silly.status_code == 400 and "Too precise" in silly.content.decode()
    assert Bid.objects.count() == 0

    coins_give(market.users["carlos"], 5 * K)
    done = carlos.post(f"/market/offers/{offer.pk}/", {"meter": "web-carlos", "price": "0.6"})
    assert done.status_code == 302
    assert wallet_uk(market.users["carlos"]) == 5 * K - 1_200_000
    cancel = carlos.post(f"/market/bids/{Bid.objects.get().pk}/cancel/")
    assert cancel.status_code == 302 and wallet_uk(market.users["carlos"]) == 5 * K
    assert client_for(market.users["danny"]).get("/market/offers/9999/").status_code == 404


def test_limits_and_an_offer_inside_them_through_the_forms(market):
    danny, bennie = client_for(market.users["danny"]), client_for(market.users["bennie"])
    coins_give(market.users["danny"], 5 * K)
    limits = {"meter": "web-danny", "period_start": hours(1).strftime(FORM_TIME),
              "period_end": hours(9).strftime(FORM_TIME), "max_price": "0.9", "min_payment": "0", "max_payment": "0.9",
              "max_deposit": "2", "v_min": "207", "v_max": "253", "tolerance": "5"}  # fmt: skip
    bad = danny.post("/market/limits/new/", {**limits, "v_min": "260"})
    assert bad.status_code == 400 and "low end must be below" in bad.content.decode()
    assert BuyerLimit.objects.count() == 0
    assert danny.post("/market/limits/new/", limits).status_code == 302
    limit = BuyerLimit.objects.get()
    assert (limit.v_min_dv, limit.v_max_dv, limit.tolerance_bp, limit.max_deposit_uk) == (2_070, 2_530, 500, 2 * K)

    offer = {
        "meter": "web-bennie", "price": "0.95", "energy_per_interval": "0.5", "start": hours(1).strftime(FORM_TIME),
        "intervals": "4", "deposit": "1", "v_min": "", "v_max": "",
    }  # fmt: skip
    assert bennie.get(f"/market/limits/{limit.pk}/offer/").status_code == 200
    refused = bennie.post(f"/market/limits/{limit.pk}/offer/", offer)
    assert refused.status_code == 400 and "price per kWh is above the buyer" in refused.content.decode()
    assert Contract.objects.count() == 0

    accepted = bennie.post(f"/market/limits/{limit.pk}/offer/", {**offer, "price": "0.8"})
    contract = Contract.objects.get()
    assert accepted.status_code == 302 and accepted.url == f"/market/contracts/{contract.pk}/"
    assert contract.status == ContractStatus.ACTIVE and contract.v_min_dv == 2_070
    assert danny.get(f"/market/contracts/{contract.pk}/").status_code == 200
    assert client_for(market.users["carlos"]).get(f"/market/contracts/{contract.pk}/").status_code == 404


def test_paying_a_deposit_with_the_button(market):
    limits_publish(market.users["danny"], market.meters["danny"], period_start=hours(1), period_end=hours(9),
                   max_price_uk_per_kwh=900_000, min_payment_uk=0, max_payment_uk=900_000, max_deposit_uk=2 * K,
                   now=NOW)  # fmt: skip
    client_for(market.users["bennie"]).post(f"/market/limits/{BuyerLimit.objects.get().pk}/offer/", {
        "meter": "web-bennie", "price": "0.8", "energy_per_interval": "0.5", "start": hours(1).strftime(FORM_TIME),
        "intervals": "4", "deposit": "1",
    })  # fmt: skip
    contract = Contract.objects.get()
    assert contract.status == ContractStatus.AWAITING_DEPOSIT
    danny = client_for(market.users["danny"])
    broke = danny.post(f"/market/contracts/{contract.pk}/deposit/", follow=True)
    assert "cannot pay the deposit" in broke.content.decode()
    coins_give(market.users["danny"], 1 * K)
    danny.post(f"/market/contracts/{contract.pk}/deposit/")
    contract.refresh_from_db()
    assert contract.status == ContractStatus.ACTIVE


def test_the_operators_page_is_for_staff_only(market):
    an_offer(market)
    assert client_for(market.users["carlos"]).get("/market/operator/").status_code == 302  # to the admin login
    page = client_for(user_make("web-operator", is_staff=True)).get("/market/operator/")
    assert page.status_code == 200 and "All trades" in page.content.decode()
