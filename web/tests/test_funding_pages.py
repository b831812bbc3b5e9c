"""Funding a meter from the browser: find, amount, confirm, the new state;
and every bad input says why and moves nothing."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from meters.models import Meter
from meters.supply import meters_decide
from utility.ledger.models import Account, Entry, Transaction

from .conftest import NOW

pytestmark = pytest.mark.django_db


def books() -> tuple:
    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        list(Account.objects.order_by("code").values_list("code", "balance_uk")),
    )


def test_search_finds_public_meters_by_id_or_label_only(client, town):
    client.force_login(town.bob)
    by_label = client.get(reverse("web:fund_search"), {"q": "elm"}).content.decode()
    assert "SL-1" in by_label
    assert "A-HOME" not in client.get(reverse("web:fund_search"), {"q": "A-"}).content.decode()
    page = client.get(reverse("web:fund"), {"q": "sl-"}).content.decode()
    assert "SL-1" in page  # without JavaScript the page searches too


def test_fund_a_street_light_and_see_it_switch_on(client, town, django_capture_on_commit_callbacks):
    meters_decide([town.light.pk], NOW)  # the light's balance is below zero: cut off
    assert Meter.objects.get(pk=town.light.pk).supply_state == "disconnect"
    client.force_login(town.bob)
    picked = client.get(reverse("web:fund"), {"meter": "SL-1"})
    assert "Street light, Elm St" in picked.content.decode()
    confirm = client.post(reverse("web:fund"), {"meter": "SL-1", "amount": "5"})
    assert confirm.status_code == 200
    request_id = confirm.context["confirm"]["request_id"]
    assert "Move <strong>5.000000 k</strong>" in confirm.content.decode()
    before = books()
    # The decision follows the funding's commit (as in production).
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(reverse("web:fund"), {"meter": "SL-1", "amount": "5", "request_id": request_id})
    assert done.status_code == 302 and done.url == reverse("web:meter", args=["SL-1"]) + "?funded=1"
    assert books() != before
    page = client.get(done.url).content.decode()
    assert 'data-state="connected"' in page and "4.550000" in page  # -0.45 + 5: 30 hours of light
    assert "You funded SL-1 with 5.000000 k." in page
    assert 'hx-trigger="every 2s"' in page  # the card polls while the decision travels
    # The same confirmation posted again (a double click): nothing moves again.
    after = books()
    again = client.post(reverse("web:fund"), {"meter": "SL-1", "amount": "5", "request_id": request_id}, follow=True)
    assert "already done" in again.content.decode()
    assert books() == after


def test_fund_someone_elses_private_meter_by_its_exact_id(client, town):
    client.force_login(town.bob)
    picked = client.get(reverse("web:fund"), {"meter": "A-HOME"}).content.decode()
    assert "a private meter" in picked and "Alice" not in picked
    request_id = uuid.uuid4().hex
    done = client.post(reverse("web:fund"), {"meter": "A-HOME", "amount": "1", "request_id": request_id})
    assert done.status_code == 302 and done.url == reverse("web:fund")
    assert Meter.objects.get(pk=town.a_home.pk).account.balance_uk == -3_300_000 + 1_000_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"meter": "SL-1", "amount": "abc"}, "is not an amount of coins"),
        ({"meter": "SL-1", "amount": ""}, "This field is required."),
        ({"meter": "SL-1", "amount": "-1"}, "The amount must be more than zero."),
        ({"meter": "SL-1", "amount": "0"}, "The amount must be more than zero."),
        ({"meter": "SL-1", "amount": "0.0000001"}, "Use at most 6 decimals"),
        ({"meter": "SL-1", "amount": "1e30"}, "That amount is too large."),
        ({"meter": "SL-1", "amount": "NaN"}, "is not an amount of coins"),
        ({"meter": "SL-1", "amount": "Infinity"}, "is not an amount of coins"),
        ({"meter": "NOPE", "amount": "1"}, "No meter has the id “NOPE”."),
        ({"meter": "", "amount": "1"}, "This field is required."),
        (
            {"meter": "SL-1", "amount": "51", "request_id": "6d3c3b5a9f0e4e2c8d1b2a3c4d5e6f70"},
            "Your wallet holds 50.000000 k",
        ),
        ({"meter": "SL-1", "amount": "1", "request_id": "not-a-uuid"}, "This form is out of date"),
    ],
)
def test_bad_funding_input_says_why_and_moves_nothing(client, town, data, message):
    client.force_login(town.bob)
    before = books()
    response = client.post(reverse("web:fund"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert books() == before


def test_an_inactive_meter_cannot_be_funded(client, town):
    Meter.objects.filter(pk=town.light.pk).update(active=False)
    client.force_login(town.bob)
    before = books()
    response = client.post(reverse("web:fund"), {"meter": "SL-1", "amount": "1", "request_id": uuid.uuid4().hex})
    assert response.status_code == 400 and "meter SL-1 is not active" in response.content.decode()
    assert books() == before


def test_a_frozen_wallet_cannot_fund(client, town):
    from utility.ledger.services import system_account, transaction_post, wallet_ensure

    wallet = wallet_ensure(town.bob)
    source = system_account("fiat_issued")
    transaction_post("take-back", "test", [(wallet.pk, -60_000_000), (source.pk, 60_000_000)])
    client.force_login(town.bob)
    before = books()
    response = client.post(reverse("web:fund"), {"meter": "SL-1", "amount": "1", "request_id": uuid.uuid4().hex})
    assert response.status_code == 400 and "your wallet is frozen" in response.content.decode()
    assert books() == before
