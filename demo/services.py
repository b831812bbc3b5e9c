"""Seed the demo grid: the seed's Angel, Bennie, Carlos and Danny, a street
light, two home batteries and a few dozen more meters, with residents whose
wallets hold operator-issued demo coins and who have funded their meters.

Readings come from the simulated fleet over MQTT (``demo.runner``); this
module only registers people, meters and money, through the real services.
"""

from __future__ import annotations

import random
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from meters.funding import meter_fund
from meters.models import Grid
from meters.services import grid_create, meter_add
from utility.residents.services import wallet_credit

GRID_SLUG = "demo"
DEMO_PASSWORD = "commonwatt-demo"  # noqa: S105 - the demo's published login
SEED_PEOPLE = [
    # username, meter id, kind, label, coins funded onto the meter
    ("angel", "M-ANGEL", "producer", "Angel's solar roof", 0),
    ("bennie", "M-BENNIE", "producer", "Bennie's solar roof", 0),
    ("carlos", "M-CARLOS", "consumer", "Carlos's house", 40),
    # Danny's meter starts unfunded: it is the one the demo sees disconnected
    # (once past the grid's 0.5 k credit), and funding it in the browser
    # reconnects it.
    ("danny", "M-DANNY", "consumer", "Danny's house", 0),
]
EXTRA_HOUSEHOLDS = 30
EXTRA_PRODUCERS = 6
UK = 1_000_000


def _user(username: str, *, staff: bool = False, login: bool = False):
    """A demo resident; only the published logins get a (slow to hash) password."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": staff, "is_superuser": staff})
    if created:
        if login or staff:
            user.set_password(DEMO_PASSWORD)
        else:
            user.set_unusable_password()
        user.save()
    return user


def _fund(username: str, meter, coins: int, now: datetime) -> None:
    """Give the resident demo coins (20 k more than they fund) and fund ``meter``."""
    user = _user(username)
    wallet_credit(username, (coins + 20) * UK, "demo coins", "demo", f"demo-wallet-{username}", now)
    if coins:
        meter_fund(user, meter, coins * UK, f"demo-fund-{meter.public_id}")


@transaction.atomic
def demo_seed(now: datetime) -> Grid:
    """Create the demo grid (once; later calls return it) starting at ``now``."""
    existing = Grid.objects.filter(slug=GRID_SLUG).first()
    if existing is not None:
        return existing
    _user("operator", staff=True)
    grid = grid_create(GRID_SLUG, "Demo community grid", now, credit_limit_uk=UK // 2, coin_price_cents=100)
    rng = random.Random(7)
    for username, meter_id, kind, label, coins in SEED_PEOPLE:
        _user(username, login=True)
        meter = meter_add(grid, meter_id, kind, label=label, owner_username=username).meter
        _fund(username, meter, coins, now)
    light = meter_add(grid, "SL-0001", "consumer", public=True, label="Street light, Main St & 1st").meter
    _fund("town", light, 3, now)
    for i in range(2):
        name = f"battery{i + 1}"
        meter = meter_add(grid, f"M-BAT{i + 1}", "prosumer", label=f"Home battery {i + 1}", owner_username=None).meter
        _fund(name, meter, 30, now)
    for i in range(EXTRA_PRODUCERS):
        meter_add(grid, f"M-P{i + 1:03d}", "producer", label=f"Solar roof {i + 1}")
    for i in range(EXTRA_HOUSEHOLDS):
        username = f"house{i + 1}"
        meter = meter_add(grid, f"M-H{i + 1:03d}", "consumer", label=f"House {i + 1}").meter
        _fund(username, meter, rng.randint(8, 60), now)
    return grid
