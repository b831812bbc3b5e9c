"""``grid_create``, ``grid_update_rules``, ``meter_add`` and friends on the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from meters.credentials import mosquitto_hash_matches, secret_unseal
from meters.models import Grid, Meter
from meters.services import grid_create, grid_mark_settled, grid_update_rules, meter_add, meter_rotate_secret
from meters.services import reading_is_late as is_late
from utility.ledger.models import Account, AccountKind

from .factories import HOUR, T0, grid_make, meter_make, user_make

pytestmark = pytest.mark.django_db


def _nothing_written() -> bool:
    return not Grid.objects.exists() and not Meter.objects.exists() and not Account.objects.exists()


# --- grid_create -------------------------------------------------------------


def test_grid_create_with_defaults_opens_its_pool_and_fee_accounts():
    grid = grid_create("demo", "Demo grid", T0 + timedelta(minutes=25, seconds=7))

    assert (grid.interval_s, grid.tariff_uk_per_kwh, grid.fee_fixed_uk, grid.fee_bp) == (3600, 1_000_000, 10_000, 0)
    assert (grid.loss_alert_bp, grid.settlement_grace_s, grid.credit_limit_uk) == (1_500, 600, 0)
    assert grid.started_at == T0  # the interval containing "now"
    assert grid.settled_through is None
    assert (grid.pool_account.code, grid.pool_account.kind) == ("pool:demo", AccountKind.POOL)
    assert (grid.fee_account.code, grid.fee_account.kind) == ("fee:demo", AccountKind.FEE)


def test_grid_create_with_rules_and_a_name_defaulting_to_the_slug():
    grid = grid_create(
        "quarter",
        "",
        T0 + timedelta(minutes=20),
        interval_s=900,
        tariff_uk_per_kwh=250_000,
        fee_fixed_uk=0,
        fee_bp=10_000,
        credit_limit_uk=2_000_000,
        loss_alert_bp=0,
        settlement_grace_s=0,
        coin_price_cents=7,
    )

    grid.refresh_from_db()
    assert grid.name == "quarter"
    assert grid.started_at == T0 + timedelta(minutes=15)
    assert (grid.interval_s, grid.tariff_uk_per_kwh, grid.fee_bp, grid.coin_price_cents) == (900, 250_000, 10_000, 7)


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"tariff_uk_per_kwh": -1}, "tariff_uk_per_kwh"),
        ({"fee_fixed_uk": -10}, "fee_fixed_uk"),
        ({"credit_limit_uk": -1}, "credit_limit_uk"),
        ({"fee_bp": 10_001}, "fee_bp"),
        ({"fee_bp": "500"}, "fee_bp"),
        ({"coin_price_cents": 0}, "coin_price_cents"),
        ({"coin_price_cents": 2.5}, "coin_price_cents"),
        ({"tariff_uk_per_kwh": 1.5}, "tariff_uk_per_kwh"),
        ({"tariff_uk_per_kwh": True}, "tariff_uk_per_kwh"),
        ({"interval_s": 7_000}, "interval_s"),
        ({"interval_s": 30}, "interval_s"),
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": "3600"}, "interval_s"),
        ({"loss_alert_bp": 2**40}, "loss_alert_bp"),
        ({"credit_limit_uk": 2**63}, "credit_limit_uk"),
        ({"colour": 1}, "colour"),
    ],
)
def test_grid_create_refuses_bad_rules_and_writes_nothing(rules, field):
    with pytest.raises(ValidationError) as refused:
        grid_create("demo", "Demo", T0, **rules)

    assert field in refused.value.message_dict
    assert _nothing_written()


@pytest.mark.parametrize("slug", ["", "Has Space", "ünïcode!", "x" * 41, "y" * 150])
def test_grid_create_refuses_a_bad_slug_and_writes_nothing(slug):
    with pytest.raises(ValidationError) as refused:
        grid_create(slug, "Demo", T0)

    assert "slug" in refused.value.message_dict
    assert _nothing_written()


def test_grid_create_refuses_a_name_too_long_and_writes_nothing():
    with pytest.raises(ValidationError) as refused:
        grid_create("demo", "n" * 121, T0)

    assert "name" in refused.value.message_dict
    assert _nothing_written()


def test_grid_create_refuses_a_duplicate_slug_and_changes_nothing():
    grid_make("demo")

    with pytest.raises(ValidationError, match="already exists"):
        grid_create("demo", "Other", T0, tariff_uk_per_kwh=5)

    assert Grid.objects.get().tariff_uk_per_kwh == 1_000_000
    assert Account.objects.count() == 2


def test_grid_create_refuses_a_naive_now():
    with pytest.raises(ValueError, match="naive"):
        grid_create("demo", "Demo", T0.replace(tzinfo=None))

    assert _nothing_written()


# --- grid_update_rules ------------------------------------------------------


def test_grid_update_rules_changes_only_the_rules_named():
    grid = grid_make("demo")

    grid_update_rules(grid, tariff_uk_per_kwh=800_000, fee_bp=250)

    grid.refresh_from_db()
    assert (grid.tariff_uk_per_kwh, grid.fee_bp, grid.fee_fixed_uk) == (800_000, 250, 10_000)


@pytest.mark.parametrize(
    "rules", [{"fee_bp": 10_001}, {"tariff_uk_per_kwh": -1}, {"interval_s": 900}, {"slug": "other"}]
)
def test_grid_update_rules_refuses_bad_rules_and_changes_nothing(rules):
    grid = grid_make("demo")

    with pytest.raises(ValidationError):
        grid_update_rules(grid, **rules)

    fresh = Grid.objects.get(pk=grid.pk)
    assert (fresh.slug, fresh.interval_s, fresh.tariff_uk_per_kwh, fresh.fee_bp) == ("demo", 3600, 1_000_000, 0)


# --- meter_add ----------------------------------------------------------------


def test_meter_add_issues_a_secret_kept_only_sealed_and_hashed():
    grid = grid_make("demo")
    owner = user_make("carlos")

    issued = meter_add(grid, "M-0001", "prosumer", public=True, label="Carlos' roof", owner_username="carlos")

    meter = Meter.objects.get(public_id="M-0001")
    assert (meter.grid, meter.kind, meter.public, meter.label, meter.owner) == (
        grid,
        "prosumer",
        True,
        "Carlos' roof",
        owner,
    )
    assert (meter.account.code, meter.account.kind, meter.account.balance_uk) == ("meter:M-0001", "meter", 0)
    assert len(issued.secret) >= 32
    assert issued.secret not in meter.secret_sealed and issued.secret not in meter.secret_hash
    assert secret_unseal(meter.secret_sealed, "M-0001") == issued.secret
    assert mosquitto_hash_matches(issued.secret, meter.secret_hash)


def test_each_meter_gets_its_own_secret():
    grid = grid_make("demo")

    first = meter_add(grid, "M-0001", "consumer")
    second = meter_add(grid, "M-0002", "consumer")

    assert first.secret != second.secret


@pytest.mark.parametrize(
    ("public_id", "kind", "owner", "field"),
    [
        ("M-0001", "seller", None, "kind"),
        ("M-0001", "", None, "kind"),
        ("bad id!", "consumer", None, "public_id"),
        ("-leading-dash", "consumer", None, "public_id"),
        ("", "consumer", None, "public_id"),
        ("M" * 41, "consumer", None, "public_id"),
        ("M" * 150, "consumer", None, "public_id"),
        ("M-0001", "consumer", "nobody", "owner"),
        ("M-0001", "consumer", "", "owner"),
    ],
)
def test_meter_add_refuses_bad_input_and_writes_nothing(public_id, kind, owner, field):
    grid = grid_make("demo")
    accounts_before = Account.objects.count()

    with pytest.raises(ValidationError) as refused:
        meter_add(grid, public_id, kind, owner_username=owner)

    assert field in refused.value.message_dict
    assert not Meter.objects.exists()
    assert Account.objects.count() == accounts_before


def test_meter_add_refuses_a_duplicate_id_even_on_another_grid():
    first, second = grid_make("north"), grid_make("south")
    meter_make(first, "M-0001")

    with pytest.raises(ValidationError, match="already exists"):
        meter_add(second, "M-0001", "producer")

    assert list(Meter.objects.values_list("grid__slug", "kind")) == [("north", "consumer")]


def test_meter_rotate_secret_replaces_the_old_one():
    meter_issued = meter_add(grid_make("demo"), "M-0001", "consumer")

    new_secret = meter_rotate_secret(meter_issued.meter)

    meter = Meter.objects.get(pk=meter_issued.meter.pk)
    assert new_secret != meter_issued.secret
    assert secret_unseal(meter.secret_sealed, "M-0001") == new_secret
    assert mosquitto_hash_matches(new_secret, meter.secret_hash)
    assert not mosquitto_hash_matches(meter_issued.secret, meter.secret_hash)


# --- settled_through and lateness -------------------------------------------


def test_grid_mark_settled_only_moves_forward():
    grid = grid_make("demo")

    grid_mark_settled(grid.pk, T0 + 2 * HOUR)
    grid_mark_settled(grid.pk, T0 + HOUR)

    grid.refresh_from_db()
    assert grid.settled_through == T0 + 2 * HOUR


def test_a_reading_is_late_only_for_an_interval_already_settled():
    grid = grid_make("demo")
    assert not is_late(grid, T0)

    grid_mark_settled(grid.pk, T0 + HOUR)
    grid.refresh_from_db()

    assert is_late(grid, T0)
    assert not is_late(grid, T0 + HOUR)
