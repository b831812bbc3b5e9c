"""Fixtures of the payments tests: the stand-in backend, a fixed coin price,
a known webhook secret, residents and producers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from utility import clock
from utility.payments.client import payments_client_install
from utility.payments.fake import fake_checkout_finish, fake_onboarding_finish
from utility.payments.models import TopUp
from utility.payments.services import connect_onboarding_url, topup_create
from utility.residents.services import wallet_credit

from .helpers import WEBHOOK_SECRET

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def payments_settings(settings):
    settings.PAYMENTS_BACKEND = "fake"
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = ""
    settings.STRIPE_API_BASE = ""
    settings.PAYMENTS_PRICE_SOURCE = "utility.payments.tests.helpers.test_price"
    settings.SITE_URL = "http://testserver"
    payments_client_install(None)
    clock.clock_install(lambda: NOW)  # what tasks and views read
    yield settings
    clock.clock_reset()
    payments_client_install(None)


@pytest.fixture
def make_resident(django_user_model):
    def make(name: str = ""):
        username = name or f"resident{next(_names)}"
        return django_user_model.objects.create_user(username=username)  # no password: tests force_login

    return make


def credit(user, amount_uk: int, request_id: str = "") -> None:
    """Operator credit, the way coins enter without a card."""
    wallet_credit(user.get_username(), amount_uk, "test coins", "tester", request_id or f"credit-{user.pk}", NOW)


def onboard(user, django_capture_on_commit_callbacks) -> None:
    """Connect onboarding through the stand-in: account, link, "finish"."""
    with django_capture_on_commit_callbacks(execute=True):
        url = connect_onboarding_url(user, NOW)
        fake_onboarding_finish(url.rstrip("/").rsplit("/", 1)[-1])


@pytest.fixture
def producer(make_resident, django_capture_on_commit_callbacks):
    """A resident with 100 coins and a connected account that can be paid out."""
    user = make_resident()
    credit(user, 100_000_000)
    onboard(user, django_capture_on_commit_callbacks)
    return user


def buy(user, amount_cents: int, capture, outcome: str = "pay") -> TopUp:
    """A top-up paid on the stand-in's "pay" page; its signed events are
    delivered to the webhook view when the page's transaction commits."""
    with capture(execute=True):
        topup = topup_create(user, amount_cents, NOW)
        fake_checkout_finish(topup.checkout_session_id, outcome)
    topup.refresh_from_db()
    return topup
