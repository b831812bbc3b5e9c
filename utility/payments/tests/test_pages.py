"""The resident pages end to end on the stand-in (the demo's path), and that a
resident sees and acts on nothing but their own top-ups and withdrawals."""

from __future__ import annotations

import pytest
from django.shortcuts import resolve_url
from django.test import Client

from utility.ledger.selectors import account_balance
from utility.ledger.services import wallet_ensure
from utility.payments.models import ConnectedAccount, TopUp, TopUpStatus, Withdrawal, WithdrawalStatus

from .conftest import buy, credit, onboard

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return url.removeprefix("http://testserver")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_a_login(client, settings):
    for page in ("/payments/", "/payments/buy/", "/payments/withdraw/"):
        response = client.get(page)
        assert response.status_code == 302
        assert response.url == f"{resolve_url(settings.LOGIN_URL)}?next={page}"
    assert client.get("/payments/login/").status_code == 200


def test_buying_coins_shows_the_rounding_then_pays_on_the_stand_in_page(
    make_resident, django_capture_on_commit_callbacks
):
    user = make_resident()
    client = logged_in(user)

    quote = client.get("/payments/buy/", {"amount": "10.00"})
    assert quote.status_code == 200
    assert b"buys <strong>3.333333 coins</strong>" in quote.content
    assert b"0.33 \xc2\xb5k of the exact amount is dropped" in quote.content

    to_checkout = client.post("/payments/buy/", {"amount": "10.00", "expected_coins_uk": "3333333"})
    assert to_checkout.status_code == 302
    checkout_page = path_of(to_checkout.url)
    assert checkout_page.startswith("/payments/fake/checkout/cs_")
    page = client.get(checkout_page)
    assert page.status_code == 200 and b"Pay 10.00 USD" in page.content
    assert account_balance(wallet_ensure(user).pk) == 0  # nothing before the webhook

    with django_capture_on_commit_callbacks(execute=True):
        paid = client.post(checkout_page, {"outcome": "pay"})

    topup = TopUp.objects.get(user=user)
    assert paid.status_code == 302 and path_of(paid.url) == f"/payments/topups/{topup.pk}/"
    assert topup.status == TopUpStatus.PAID
    assert account_balance(wallet_ensure(user).pk) == 3_333_333
    assert b"Paid and credited" in client.get(path_of(paid.url)).content
    assert b"3.333333 k" in client.get("/payments/").content


def test_a_price_change_between_the_quote_and_paying_is_caught(make_resident, settings):
    client = logged_in(make_resident())

    response = client.post("/payments/buy/", {"amount": "10.00", "expected_coins_uk": "5000000"})

    assert response.status_code == 200
    assert b"the coin price changed" in response.content
    assert not TopUp.objects.exists()


def test_the_buy_form_needs_a_csrf_token(make_resident):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_resident())
    assert client.post("/payments/buy/", {"amount": "10.00"}).status_code == 403


def test_connecting_a_bank_account_and_withdrawing_through_the_pages(make_resident, django_capture_on_commit_callbacks):
    user = make_resident()
    credit(user, 100_000_000)
    client = logged_in(user)

    to_onboarding = client.post("/payments/connect/")
    onboarding_page = path_of(to_onboarding.url)
    assert onboarding_page.startswith("/payments/fake/onboarding/link_")
    assert b"Finish onboarding" in client.get(onboarding_page).content
    with django_capture_on_commit_callbacks(execute=True):
        back = client.post(onboarding_page)
    assert path_of(back.url) == "/payments/connect/return/"
    assert client.get("/payments/connect/return/", follow=True).status_code == 200
    assert ConnectedAccount.objects.get(user=user).payouts_enabled

    quote = client.get("/payments/withdraw/", {"coins": "40"})
    assert b"pays <strong>120.00 USD</strong>" in quote.content
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post("/payments/withdraw/", {"coins": "40", "request_id": "form-1"})

    withdrawal = Withdrawal.objects.get(user=user)
    assert path_of(done.url) == f"/payments/withdrawals/{withdrawal.pk}/"
    assert withdrawal.status == WithdrawalStatus.PAID
    assert account_balance(wallet_ensure(user).pk) == 60_000_000
    assert b"Paid" in client.get(done.url).content


def test_a_resident_sees_and_acts_only_on_their_own_top_ups_and_withdrawals(
    make_resident, django_capture_on_commit_callbacks
):
    alice, bob = make_resident("alice"), make_resident("bob")
    credit(alice, 100_000_000)
    onboard(alice, django_capture_on_commit_callbacks)
    topup = buy(alice, 1_000, django_capture_on_commit_callbacks)
    open_topup_client = logged_in(alice)
    open_topup_client.post("/payments/buy/", {"amount": "20.00"})
    open_topup = TopUp.objects.get(user=alice, status=TopUpStatus.OPEN)
    with django_capture_on_commit_callbacks(execute=True):
        logged_in(alice).post("/payments/withdraw/", {"coins": "40", "request_id": "a-1"})
    withdrawal = Withdrawal.objects.get(user=alice)
    link = path_of(logged_in(alice).post("/payments/connect/").url)  # a fresh onboarding link of alice's
    bob_client = logged_in(bob)

    assert bob_client.get(f"/payments/topups/{topup.pk}/").status_code == 404
    assert bob_client.get(f"/payments/withdrawals/{withdrawal.pk}/").status_code == 404
    assert bob_client.get("/payments/topups/not-a-uuid/").status_code == 404
    checkout = f"/payments/fake/checkout/{open_topup.checkout_session_id}/"
    assert bob_client.get(checkout).status_code == 404
    assert bob_client.post(checkout, {"outcome": "pay"}).status_code == 404
    assert bob_client.post(link).status_code == 404
    home = bob_client.get("/payments/").content
    assert str(topup.pk).encode() not in home and str(withdrawal.pk).encode() not in home
    assert TopUp.objects.get(pk=open_topup.pk).status == TopUpStatus.OPEN

    alice_client = logged_in(alice)
    assert alice_client.get(f"/payments/topups/{topup.pk}/").status_code == 200
    assert alice_client.get(f"/payments/withdrawals/{withdrawal.pk}/").status_code == 200
    home = alice_client.get("/payments/").content
    assert str(topup.pk).encode() in home and str(withdrawal.pk).encode() in home


def test_the_stand_in_pages_do_not_exist_with_stripe(make_resident, settings):
    settings.PAYMENTS_BACKEND = "stripe"
    client = logged_in(make_resident())
    assert client.get("/payments/fake/checkout/cs_whatever/").status_code == 404
    assert client.get("/payments/fake/onboarding/link_whatever/").status_code == 404
