"""Where meters meet payments: a grid's coin price is what residents buy and
withdraw at (``meters.pricing``), and a wallet frozen by a dispute cannot fund
a meter (``meter_fund`` asks ``utility.payments.selectors``)."""

from __future__ import annotations

import pytest

from meters.funding import FundingError, meter_fund
from meters.models import Grid
from meters.mqtt import memory_publisher
from meters.pricing import coin_price_for
from meters.tests.factories import grid_make, meter_make, user_make
from utility.ledger.selectors import account_balance
from utility.ledger.services import wallet_ensure
from utility.payments import fake
from utility.payments.client import payments_client_install
from utility.payments.pricing import CoinPrice
from utility.payments.services import topup_create, topup_quote_for

from .factories import T0

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def stand_in(settings):
    settings.PAYMENTS_BACKEND = "fake"
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_meters_test"
    settings.PAYMENTS_PRICE_SOURCE = "meters.pricing.coin_price_for"
    settings.MQTT_PUBLISHER = "memory"
    payments_client_install(None)
    yield
    memory_publisher().clear()


def test_a_resident_buys_at_the_price_of_their_meters_grid():
    grid_make("north", coin_price_cents=250)
    south = grid_make("south", coin_price_cents=120)
    Grid.objects.filter(pk=south.pk).update(currency="eur")
    carlos = user_make("carlos")
    meter_make(south, "S-1", owner=carlos)

    assert coin_price_for(carlos) == CoinPrice("south", 120, "eur")
    assert topup_quote_for(carlos, 1_200).coins_uk == 10_000_000
    assert coin_price_for(user_make("nomad")) is None  # two grids, no meter: no price


def test_with_one_grid_a_resident_without_a_meter_buys_on_it():
    grid_make("only", coin_price_cents=100)
    assert coin_price_for(user_make("newcomer")) == CoinPrice("only", 100, "usd")


def test_a_wallet_frozen_by_a_dispute_cannot_fund_a_meter_until_the_dispute_is_won(
    django_capture_on_commit_callbacks,
):
    grid = grid_make("demo", coin_price_cents=100)
    angel = user_make("angel")
    meter = meter_make(grid, "M-1", owner=angel)
    with django_capture_on_commit_callbacks(execute=True):
        topup = topup_create(angel, 2_000, T0)
        fake.fake_checkout_finish(topup.checkout_session_id, "pay")
    topup.refresh_from_db()
    assert account_balance(wallet_ensure(angel).pk) == 20_000_000
    meter_fund(angel, meter, 5_000_000, "before")

    with django_capture_on_commit_callbacks(execute=True):
        dispute_id = fake.fake_dispute_open(topup.payment_intent_id)
    with pytest.raises(FundingError, match="your wallet is frozen: a card payment of yours is disputed"):
        meter_fund(angel, meter, 1_000_000, "during")
    assert account_balance(wallet_ensure(angel).pk) == -5_000_000  # the disputed 20 coins were taken back

    with django_capture_on_commit_callbacks(execute=True):
        fake.fake_dispute_close(dispute_id, won=True)
    assert meter_fund(angel, meter, 1_000_000, "after").created
