"""Signed payloads posted to the real webhook view."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.test import Client

from utility.ledger.models import AccountKind, Transaction
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, wallet_ensure
from utility.payments.models import TopUp, TopUpStatus, WebhookEvent
from utility.payments.services import topup_create, topups
from utility.payments.tests.helpers import Payment, event, post_event, signature

from .conftest import NOW

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment(make_resident) -> Payment:
    """A 10.00 USD top-up at 3.00 a coin: 3.333333 coins once paid."""
    return Payment(topup_create(make_resident(), 1_000, NOW))


def wallet_uk(user) -> int:
    return account_balance(wallet_ensure(user).pk)


def test_a_paid_checkout_session_credits_the_rounded_down_coins_once(client, payment):
    completed = payment.completed()

    first = post_event(client, completed)
    again = post_event(client, completed)

    assert (first.status_code, first.json()) == (200, {"result": "processed"})
    assert (again.status_code, again.json()) == (200, {"result": "duplicate"})
    assert wallet_uk(payment.topup.user) == 3_333_333
    assert account_balance(system_account(AccountKind.FIAT_ISSUED).pk) == -3_333_333
    topup = TopUp.objects.get(pk=payment.topup.pk)
    assert (topup.status, topup.payment_intent_id, topup.credited_uk) == (
        TopUpStatus.PAID,
        payment.intent_id,
        3_333_333,
    )
    assert Transaction.objects.filter(idempotency_key=f"topup_credit:{payment.intent_id}").count() == 1
    row = WebhookEvent.objects.get(pk=completed["id"])
    assert row.processed_at is not None and row.payload == completed and row.error == ""
    assert ledger_problems() == []


def test_checkout_completed_and_payment_intent_succeeded_for_one_payment_credit_once(client, payment):
    assert post_event(client, payment.intent_succeeded()).status_code == 200
    assert post_event(client, payment.completed()).status_code == 200
    assert post_event(client, event("checkout.session.async_payment_succeeded", payment.session())).status_code == 200

    assert wallet_uk(payment.topup.user) == 3_333_333
    assert Transaction.objects.filter(kind="topup_credit").count() == 1
    assert WebhookEvent.objects.filter(processed_at__isnull=False).count() == 3


def test_an_unpaid_session_credits_nothing_until_the_async_payment_succeeds(client, payment):
    assert post_event(client, payment.completed(payment_status="unpaid")).status_code == 200
    assert wallet_uk(payment.topup.user) == 0
    assert TopUp.objects.get(pk=payment.topup.pk).status == TopUpStatus.OPEN

    post_event(client, event("checkout.session.async_payment_succeeded", payment.session("paid")))

    assert wallet_uk(payment.topup.user) == 3_333_333


def test_a_failed_async_payment_marks_the_top_up_failed_and_credits_nothing(client, payment):
    post_event(client, payment.completed(payment_status="unpaid"))
    post_event(client, event("checkout.session.async_payment_failed", payment.session("unpaid")))

    topup = TopUp.objects.get(pk=payment.topup.pk)
    assert (topup.status, topup.failure_reason) == (TopUpStatus.FAILED, "the payment failed")
    assert wallet_uk(payment.topup.user) == 0
    assert not Transaction.objects.filter(kind="topup_credit").exists()


def test_a_late_failure_event_does_not_undo_a_payment(client, payment):
    post_event(client, payment.completed())
    post_event(client, event("checkout.session.expired", payment.session("unpaid")))

    assert TopUp.objects.get(pk=payment.topup.pk).status == TopUpStatus.PAID
    assert wallet_uk(payment.topup.user) == 3_333_333


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Stripe-Signature": signature(b"something else")}, id="signature-of-another-body"),
        pytest.param({"Stripe-Signature": "t=1,v1=00"}, id="garbage"),
        pytest.param({}, id="missing"),
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("stale", id="stale-by-6-minutes"),
    ],
)
def test_a_bad_missing_or_stale_signature_gets_400_and_stores_nothing_but_a_log_line(client, payment, caplog, headers):
    body = json.dumps(payment.completed()).encode()
    if headers == "wrong-secret":
        headers = {"Stripe-Signature": signature(body, secret="whsec_not_ours")}
    elif headers == "stale":
        headers = {"Stripe-Signature": signature(body, timestamp=int(time.time()) - 360)}

    with caplog.at_level(logging.WARNING, logger="utility.payments.views"):
        response = client.post("/payments/webhook/", data=body, content_type="application/json", headers=headers)

    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0
    assert wallet_uk(payment.topup.user) == 0
    ours = [r.getMessage()[:28] for r in caplog.records if r.name == "utility.payments.views"]
    assert ours == ["stripe webhook refused from "]


def test_a_signature_within_the_tolerance_is_accepted(client, payment):
    response = post_event(client, payment.completed(), timestamp=int(time.time()) - 240)
    assert response.status_code == 200


def test_an_event_that_fails_once_is_kept_and_applied_once_on_retry(client, payment, monkeypatch):
    completed = payment.completed()
    real = topups.topup_ledger_sync
    calls = {"n": 0}

    def flaky(topup, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database hiccup")
        return real(topup, *args, **kwargs)

    monkeypatch.setattr(topups, "topup_ledger_sync", flaky)

    failed = post_event(client, completed)
    row = WebhookEvent.objects.get(pk=completed["id"])
    assert failed.status_code == 500
    assert (row.processed_at, row.attempts, row.error) == (None, 1, "RuntimeError: database hiccup")
    assert wallet_uk(payment.topup.user) == 0
    assert TopUp.objects.get(pk=payment.topup.pk).status == TopUpStatus.OPEN  # rolled back with it

    retried = post_event(client, completed)
    third = post_event(client, completed)

    assert (retried.status_code, retried.json()["result"]) == (200, "processed")
    assert (third.status_code, third.json()["result"]) == (200, "duplicate")
    assert wallet_uk(payment.topup.user) == 3_333_333
    row.refresh_from_db()
    assert (row.attempts, row.error) == (2, "")
    assert ledger_problems() == []


def test_events_of_other_types_and_of_unknown_payments_are_stored_and_ignored(client, payment):
    other = event("customer.created", {"id": "cus_1", "object": "customer"})
    foreign = event("checkout.session.completed", {**payment.session(), "id": "cs_other", "metadata": {}})
    foreign["data"]["object"]["client_reference_id"] = None

    assert post_event(client, other).json()["result"] == "processed"
    assert post_event(client, foreign).json()["result"] == "processed"
    assert wallet_uk(payment.topup.user) == 0


def test_the_webhook_takes_only_post(client: Client):
    assert client.get("/payments/webhook/").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_the_same_event_ten_times_concurrently_credits_once(make_resident):
    from utility.ledger.tests.helpers import run_concurrently

    payment = Payment(topup_create(make_resident(), 1_000, NOW))
    completed = payment.completed()

    def deliver():
        return post_event(Client(), completed).json()["result"]

    results = run_concurrently([deliver for _ in range(10)])

    assert sorted(results) == ["duplicate"] * 9 + ["processed"], results
    assert wallet_uk(payment.topup.user) == 3_333_333
    assert Transaction.objects.filter(kind="topup_credit").count() == 1
    assert WebhookEvent.objects.count() == 1
    assert ledger_problems() == []
