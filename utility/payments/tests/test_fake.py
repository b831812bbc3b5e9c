"""The stand-in: refused with a live key, signs like Stripe, retries like Stripe."""

from __future__ import annotations

import json

import pytest
import stripe
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from utility.ledger.selectors import account_balance
from utility.ledger.services import wallet_ensure
from utility.payments import fake
from utility.payments.client import ProviderDeclined, payments_client
from utility.payments.fake import FakeClient, fake_sign
from utility.payments.models import FakeEvent, TopUp, TopUpStatus, WebhookEvent
from utility.payments.services import topup_create, topups
from utility.payments.stripe_client import StripeClient

from .conftest import NOW, buy
from .helpers import WEBHOOK_SECRET

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("key", ["sk_live_51Habc", "rk_live_51Habc"])
def test_the_stand_in_is_refused_with_a_live_key_at_first_use_and_by_the_checks(settings, key):
    settings.STRIPE_SECRET_KEY = key

    with pytest.raises(ImproperlyConfigured, match="refused with a live Stripe key"):
        payments_client()
    with pytest.raises(SystemCheckError, match=r"payments\.E001"):
        call_command("check")


def test_stripe_needs_its_keys_and_then_gets_the_real_client(settings):
    settings.PAYMENTS_BACKEND, settings.STRIPE_WEBHOOK_SECRET = "stripe", ""
    with pytest.raises(ImproperlyConfigured, match=r"STRIPE_SECRET_KEY.*STRIPE_WEBHOOK_SECRET"):
        payments_client()
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = "sk_test_x", WEBHOOK_SECRET
    assert isinstance(payments_client(), StripeClient)
    settings.PAYMENTS_BACKEND = "fake"
    assert isinstance(payments_client(), FakeClient)


def test_the_stand_ins_signature_is_the_one_the_stripe_library_verifies():
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "ping"}).encode()
    header = fake_sign(payload, WEBHOOK_SECRET, 1_700_000_000)

    stripe.WebhookSignature.verify_header(payload, header, WEBHOOK_SECRET, tolerance=None)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_other", tolerance=None)


def test_an_event_the_webhook_failed_is_delivered_again_and_applied_once(
    make_resident, monkeypatch, django_capture_on_commit_callbacks
):
    user = make_resident()
    real = topups.topup_ledger_sync
    monkeypatch.setattr(topups, "topup_ledger_sync", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("db down")))

    topup = buy(user, 1_000, django_capture_on_commit_callbacks)

    assert topup.status == TopUpStatus.OPEN
    undelivered = FakeEvent.objects.filter(delivered_at__isnull=True)
    assert {e.type for e in undelivered} == {"checkout.session.completed", "payment_intent.succeeded"}
    assert {e.last_status for e in undelivered} == {500}

    monkeypatch.setattr(topups, "topup_ledger_sync", real)
    assert fake.fake_events_redeliver() == 2
    assert fake.fake_events_redeliver() == 0

    assert TopUp.objects.get(pk=topup.pk).status == TopUpStatus.PAID
    assert account_balance(wallet_ensure(user).pk) == 3_333_333
    assert WebhookEvent.objects.filter(processed_at__isnull=True).count() == 0


def test_an_idempotency_key_returns_the_first_session_and_refuses_other_parameters():
    client = FakeClient()
    params = dict(
        amount_cents=1_000,
        currency="usd",
        product_name="coins",
        metadata={"topup_id": "t"},
        success_url="http://testserver/ok",
        cancel_url="http://testserver/no",
    )
    first = client.checkout_session_create(**params, idempotency_key="checkout:t")
    again = client.checkout_session_create(**params, idempotency_key="checkout:t")
    assert first == again
    with pytest.raises(ProviderDeclined, match="same parameters"):
        client.checkout_session_create(**{**params, "amount_cents": 2_000}, idempotency_key="checkout:t")


def test_cancelling_on_the_pay_page_fails_the_top_up(make_resident, django_capture_on_commit_callbacks):
    topup = buy(make_resident(), 1_000, django_capture_on_commit_callbacks, outcome="cancel")
    assert (topup.status, topup.failure_reason) == (TopUpStatus.FAILED, "checkout expired")


def test_a_bank_debit_that_succeeds_later_credits_once(make_resident, django_capture_on_commit_callbacks):
    topup = buy(make_resident(), 1_000, django_capture_on_commit_callbacks, outcome="pay_async")
    assert (topup.status, topup.credited_uk) == (TopUpStatus.PAID, 3_333_333)


def test_a_bank_debit_that_fails_later_credits_nothing(make_resident, django_capture_on_commit_callbacks):
    topup = buy(make_resident(), 1_000, django_capture_on_commit_callbacks, outcome="pay_async_fail")
    assert (topup.status, topup.credited_uk) == (TopUpStatus.FAILED, 0)


def test_a_top_up_whose_payment_page_cannot_open_fails_clearly(make_resident, monkeypatch):
    from utility.payments.client import ProviderUnavailable
    from utility.payments.services import PaymentsError

    def down(self, **kwargs):
        raise ProviderUnavailable("timeout")

    monkeypatch.setattr(FakeClient, "checkout_session_create", down)
    with pytest.raises(PaymentsError, match="could not be opened"):
        topup_create(make_resident(), 1_000, NOW)
    assert TopUp.objects.get().status == TopUpStatus.FAILED
