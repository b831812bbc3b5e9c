"""A small town for the web's tests, built through the real services.

Alice (resident A) owns a house and a solar roof; Bob (resident B) owns a
house; a public street light; an operator (staff). Three settled hours of
readings. The clock is fixed; decisions go to the in-memory MQTT publisher.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.cache import cache

from meters.models import Grid, Meter
from meters.mqtt import memory_publisher
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make, user_make
from settlement.services import settlement_close
from utility import clock
from utility.payments.client import payments_client_install
from utility.residents.services import wallet_credit

NOW = T0 + 3 * HOUR + timedelta(minutes=30)
K = 1_000_000
PASSWORD = "a-long-test-password-42"


@dataclass
class Town:
    grid: Grid
    alice: object
    bob: object
    operator: object
    a_home: Meter
    a_roof: Meter
    b_home: Meter
    light: Meter


@pytest.fixture(autouse=True)
def web_settings(settings):
    """Memory MQTT, a fixed clock, the payments stand-in, an empty cache
    (login limits and API throttles count in it)."""
    settings.MQTT_PUBLISHER = "memory"
    settings.PAYMENTS_BACKEND = "fake"
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_PRICE_SOURCE = "meters.pricing.coin_price_for"
    settings.SITE_URL = "http://testserver"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Test passwords need no slow hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    payments_client_install(None)
    memory_publisher().clear()
    cache.clear()
    clock.clock_install(lambda: NOW)
    yield settings
    clock.clock_reset()
    cache.clear()
    memory_publisher().clear()


def town_build(*, with_passwords: bool = False) -> Town:
    """The town, three intervals of readings, settled."""
    password = PASSWORD if with_passwords else None
    alice = user_make("alice", password=password, email="alice@example.org")
    bob = user_make("bob", password=password, email="bob@example.org")
    operator = user_make("op", password=password, is_staff=True, is_superuser=True)
    grid = grid_make("town", credit_limit_uk=0)
    a_home = meter_make(grid, "A-HOME", "consumer", owner=alice, label="Alice's house")
    a_roof = meter_make(grid, "A-ROOF", "producer", owner=alice, label="Alice's roof")
    b_home = meter_make(grid, "B-HOME", "consumer", owner=bob, label="Bob's house")
    light = meter_make(grid, "SL-1", "consumer", public=True, label="Street light, Elm St")
    for hour in range(3):
        start = T0 + hour * HOUR
        reading_make(a_home, start, import_wh=1000 + 100 * hour)
        reading_make(b_home, start, import_wh=2000)
        reading_make(light, start, import_wh=150)
        reading_make(a_roof, start, export_wh=3000)
        settlement_close(grid.pk, start, start + HOUR + timedelta(minutes=15))
    for user in (alice, bob):
        wallet_credit(user.get_username(), 50 * K, "test coins", "tester", f"seed-{user.pk}", NOW)
    return Town(grid, alice, bob, operator, a_home, a_roof, b_home, light)


@pytest.fixture
def town(db) -> Town:
    return town_build()
