"""The market API end to end through DRF: each endpoint does its one thing,
and bad input gets a clear 400 (or 401/403/404) and changes nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from marketplace.models import Bid, BuyerLimit, Contract, Offer
from marketplace.services import market_price_publish
from meters.tests.factories import user_make
from utility import clock
from utility.ledger.selectors import ledger_problems

from .helpers import NOW, K, coins_give, hours, market_make, wallet_uk

ISO = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def market(db):
    clock.clock_install(lambda: NOW)
    yield market_make("api")
    clock.clock_reset()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def offer_body(**changes) -> dict:
    body = {
        "meter": "api-angel", "energy_wh": 2_000, "delivery_start": hours(2).strftime(ISO),
        "delivery_end": hours(4).strftime(ISO), "start_price_uk_per_kwh": 500_000, "ends_at": hours(1).strftime(ISO),
    }  # fmt: skip
    body.update(changes)
    return body


def test_an_auction_through_the_api(market):
    angel, carlos = client_for(market.users["angel"]), client_for(market.users["carlos"])
    coins_give(market.users["carlos"], 5 * K)

    created = angel.post("/api/market/offers/", offer_body(reserve_price_uk_per_kwh=700_000), format="json")
    assert created.status_code == 201, created.json()
    offer_id = created.json()["id"]
    assert created.json()["reserve_met"] is False and "reserve_price_uk_per_kwh" not in created.json()

    bid = carlos.post(f"/api/market/offers/{offer_id}/bids/", {"meter": "api-carlos", "price_uk_per_kwh": 700_000})
    assert bid.status_code == 201, bid.json()
    assert bid.json()["amount_uk"] == 1_400_000 and bid.json()["status"] == "standing"
    assert wallet_uk(market.users["carlos"]) == 5 * K - 1_400_000

    listed = carlos.get("/api/market/offers/", {"grid": "api"}).json()
    assert [(o["id"], o["best_bid_uk_per_kwh"], o["reserve_met"]) for o in listed] == [(offer_id, 700_000, True)]
    detail = carlos.get(f"/api/market/offers/{offer_id}/").json()
    assert [b["price_uk_per_kwh"] for b in detail["bids"]] == [700_000]
    assert [b["offer"] for b in carlos.get("/api/market/bids/").json()] == [offer_id]

    cancelled = carlos.post(f"/api/market/bids/{bid.json()['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert wallet_uk(market.users["carlos"]) == 5 * K
    assert angel.post(f"/api/market/offers/{offer_id}/cancel/").json()["status"] == "cancelled"
    assert ledger_problems() == []


@pytest.mark.parametrize(
    ("changes", "status", "says"),
    [
        ({"energy_wh": 0}, 400, "energy_wh"),
        ({"energy_wh": "lots"}, 400, "energy_wh"),
        ({"delivery_start": "yesterday"}, 400, "delivery_start"),
        ({"meter": "no-such-meter"}, 400, "No meter has the id"),
        ({"meter": "api-carlos"}, 400, "not yours"),
        ({"delivery_start": hours(2).replace(minute=30).strftime(ISO)}, 400, "boundaries"),
        ({"ends_at": hours(3).strftime(ISO)}, 400, "no later than the delivery"),
    ],
)
def test_bad_offers_get_a_clear_400_and_change_nothing(market, changes, status, says):
    response = client_for(market.users["angel"]).post("/api/market/offers/", offer_body(**changes), format="json")
    assert response.status_code == status
    assert says in str(response.json()["error"])
    assert Offer.objects.count() == 0


def test_bad_bids_get_a_clear_400_and_change_nothing(market):
    offer = client_for(market.users["angel"]).post("/api/market/offers/", offer_body(), format="json").json()
    carlos = client_for(market.users["carlos"])
    url = f"/api/market/offers/{offer['id']}/bids/"
    for body, says in [
        ({"meter": "api-carlos", "price_uk_per_kwh": 600_000}, "cannot hold"),  # an empty wallet
        ({"meter": "api-carlos", "price_uk_per_kwh": 100}, "at least 500000"),
        ({"meter": "api-carlos", "price_uk_per_kwh": -1}, "price_uk_per_kwh"),
        ({"meter": "api-danny", "price_uk_per_kwh": 600_000}, "not yours"),
        ({"price_uk_per_kwh": 600_000}, "meter"),
    ]:
        response = carlos.post(url, body, format="json")
        assert response.status_code == 400, body
        assert says in str(response.json()["error"]), response.json()
    assert (
        carlos.post("/api/market/offers/9999/bids/", {"meter": "api-carlos", "price_uk_per_kwh": 1}).status_code == 400
    )
    assert Bid.objects.count() == 0


def test_limits_and_a_bilateral_contract_through_the_api(market):
    danny, bennie = client_for(market.users["danny"]), client_for(market.users["bennie"])
    coins_give(market.users["danny"], 5 * K)
    limits = danny.post("/api/market/limits/", {
        "meter": "api-danny", "period_start": hours(1).strftime(ISO), "period_end": hours(9).strftime(ISO),
        "max_price_uk_per_kwh": 900_000, "min_payment_uk": 0, "max_payment_uk": 900_000, "max_deposit_uk": 2 * K,
    }, format="json")  # fmt: skip
    assert limits.status_code == 201, limits.json()
    assert limits.json()["v_min_dv"] == 2_070 and limits.json()["tolerance_bp"] == 500
    limit_id = limits.json()["id"]
    assert [item["id"] for item in bennie.get("/api/market/limits/").json()] == [limit_id]

    offer = {
        "meter": "api-bennie", "price_uk_per_kwh": 950_000, "wh_per_interval": 500,
        "delivery_start": hours(1).strftime(ISO), "delivery_end": hours(5).strftime(ISO), "deposit_uk": 1 * K,
    }  # fmt: skip
    refused = bennie.post(f"/api/market/limits/{limit_id}/offers/", offer, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "outside_limits"
    assert refused.json()["error"]["violations"] == ["price_above_max"]
    assert Contract.objects.count() == 0

    accepted = bennie.post(
        f"/api/market/limits/{limit_id}/offers/", {**offer, "price_uk_per_kwh": 800_000}, format="json"
    )
    assert accepted.status_code == 201, accepted.json()
    contract = accepted.json()
    assert (contract["status"], contract["escrow_uk"], contract["energy_wh"]) == ("active", 1 * K, 2_000)
    assert [c["id"] for c in danny.get("/api/market/contracts/").json()] == [contract["id"]]
    assert danny.get(f"/api/market/contracts/{contract['id']}/").json()["deliveries"] == []
    stranger = client_for(market.users["carlos"])
    assert stranger.get(f"/api/market/contracts/{contract['id']}/").status_code == 404
    no_deposit = danny.post(f"/api/market/contracts/{contract['id']}/deposit/")
    assert no_deposit.status_code == 400 and "no deposit is due" in no_deposit.json()["error"]["message"]
    assert danny.post(f"/api/market/limits/{limit_id}/withdraw/").json()["active"] is False


def test_bad_limits_get_a_clear_400_and_change_nothing(market):
    response = client_for(market.users["danny"]).post("/api/market/limits/", {
        "meter": "api-danny", "period_start": hours(1).strftime(ISO), "period_end": hours(9).strftime(ISO),
        "max_price_uk_per_kwh": 900_000, "min_payment_uk": 5 * K, "max_payment_uk": 1, "max_deposit_uk": 0,
    }, format="json")  # fmt: skip
    assert response.status_code == 400
    assert "minimum payment" in response.json()["error"]["message"]
    assert BuyerLimit.objects.count() == 0


def test_prices_and_the_operators_view(market):
    market_price_publish(market.grid, NOW)
    resident = client_for(market.users["carlos"])
    prices = resident.get("/api/market/prices/api/").json()
    assert [(p["tariff_uk_per_kwh"], p["market_uk_per_kwh"]) for p in prices] == [(1_000_000, None)]
    assert resident.get("/api/market/prices/nowhere/").status_code == 404
    assert resident.get("/api/market/ops/trades/").status_code == 403
    staff = client_for(user_make("api-operator", is_staff=True))
    assert staff.get("/api/market/ops/trades/").json() == {"offers": [], "contracts": []}
    assert APIClient().get("/api/market/offers/").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/api/market/offers/999/cancel/",
        "/api/market/bids/999/cancel/",
        "/api/market/limits/999/withdraw/",
        "/api/market/contracts/999/deposit/",
    ],
)
def test_actions_on_what_is_not_yours_or_does_not_exist_are_refused(market, path):
    response = client_for(market.users["carlos"]).post(path)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "refused" and "no such" in response.json()["error"]["message"]
    assert client_for(market.users["carlos"]).post("/api/market/limits/999/offers/", {}).status_code == 400
