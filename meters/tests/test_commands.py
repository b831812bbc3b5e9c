"""``manage.py grid_create`` and ``manage.py meter_add``: success and every bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from meters.credentials import mosquitto_hash_matches, secret_unseal
from meters.models import Grid, Meter
from utility.ledger.models import Account

from .factories import grid_make, meter_make, user_make

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- grid_create ---------------------------------------------------------------


def test_grid_create_with_defaults():
    out = _run("grid_create", "demo")

    grid = Grid.objects.get(slug="demo")
    assert (grid.name, grid.tariff_uk_per_kwh, grid.fee_fixed_uk, grid.interval_s) == ("demo", 1_000_000, 10_000, 3600)
    assert out.startswith("Created grid demo (demo): 3600 s intervals from ")
    assert "tariff 1.000000 k/kWh, fee 0.010000 k + 0 bp" in out
    assert set(Account.objects.values_list("code", flat=True)) == {"pool:demo", "fee:demo"}


def test_grid_create_with_every_option():
    out = _run(
        "grid_create",
        "riverside",
        "--name",
        "Riverside Microgrid",
        "--interval-s",
        "900",
        "--tariff-uk-per-kwh",
        "850000",
        "--fee-fixed-uk",
        "5000",
        "--fee-bp",
        "150",
        "--credit-limit-uk",
        "2000000",
        "--loss-alert-bp",
        "1200",
        "--grace-s",
        "300",
        "--coin-price-cents",
        "95",
    )

    grid = Grid.objects.get(slug="riverside")
    assert grid.name == "Riverside Microgrid"
    assert (grid.interval_s, grid.tariff_uk_per_kwh, grid.fee_fixed_uk, grid.fee_bp) == (900, 850_000, 5_000, 150)
    assert (grid.credit_limit_uk, grid.loss_alert_bp, grid.settlement_grace_s, grid.coin_price_cents) == (
        2_000_000,
        1_200,
        300,
        95,
    )
    assert "Created grid riverside (Riverside Microgrid): 900 s intervals" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--tariff-uk-per-kwh", "-1"], "tariff_uk_per_kwh: must be a non-negative integer"),
        (["demo", "--fee-fixed-uk", "-5"], "fee_fixed_uk: must be a non-negative integer"),
        (["demo", "--credit-limit-uk", "-1"], "credit_limit_uk: must be a non-negative integer"),
        (["demo", "--grace-s", "-600"], "settlement_grace_s: must be a non-negative integer"),
        (["demo", "--fee-bp", "10001"], "fee_bp: cannot exceed 10000"),
        (["demo", "--interval-s", "7000"], "interval_s: must be at least 60 and divide a day"),
        (["demo", "--interval-s", "59"], "interval_s: must be at least 60"),
        (["demo", "--coin-price-cents", "0"], "coin_price_cents: must be at least 1 cent"),
        (["demo", "--fee-bp", "10001", "--fee-fixed-uk", "-1"], "fee_bp: cannot exceed 10000 (100 %); fee_fixed_uk"),
        (["demo", "--tariff-uk-per-kwh", "1.5"], "argument --tariff-uk-per-kwh: invalid int value: '1.5'"),
        (["demo", "--fee-bp", "ten"], "argument --fee-bp: invalid int value: 'ten'"),
        (["demo", "--interval-s", ""], "argument --interval-s: invalid int value: ''"),
        (["bad slug!"], "slug: Enter a valid “slug”"),
        (["s" * 41], "slug: Ensure this value has at most 40 characters"),
        (["demo", "--name", "n" * 121], "name: Ensure this value has at most 120 characters"),
        ([], "the following arguments are required: slug"),
        (["demo", "--colour", "red"], "unrecognized arguments: --colour red"),
    ],
)
def test_grid_create_refuses_bad_input_and_writes_nothing(args, message):
    with pytest.raises(CommandError) as refused:
        _run("grid_create", *args)

    assert message in str(refused.value)
    assert not Grid.objects.exists()
    assert not Account.objects.exists()


def test_grid_create_refuses_a_duplicate_slug_and_changes_nothing():
    _run("grid_create", "demo", "--tariff-uk-per-kwh", "900000")

    with pytest.raises(CommandError, match="grid not created: slug: grid 'demo' already exists"):
        _run("grid_create", "demo", "--tariff-uk-per-kwh", "1")

    assert list(Grid.objects.values_list("slug", "tariff_uk_per_kwh")) == [("demo", 900_000)]
    assert Account.objects.count() == 2


def test_grid_create_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("grid_create", "--help")

    help_text = capsys.readouterr().out
    assert exited.value.code == 0
    for flag in (
        "--name",
        "--interval-s",
        "--tariff-uk-per-kwh",
        "--fee-fixed-uk",
        "--fee-bp",
        "--credit-limit-uk",
        "--loss-alert-bp",
        "--grace-s",
        "--coin-price-cents",
    ):
        assert flag in help_text


def test_grid_create_exits_non_zero_from_the_shell():
    # argparse refuses before any database access, so this needs no test database.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "utility.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "grid_create", "demo", "--fee-bp", "1.5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert "invalid int value: '1.5'" in done.stderr


# --- meter_add -----------------------------------------------------------------


def test_meter_add_prints_the_secret_once():
    grid_make("demo")
    user_make("carlos")

    out = _run("meter_add", "demo", "M-0001", "--kind", "prosumer", "--label", "12 Elm St", "--owner", "carlos")

    meter = Meter.objects.get(public_id="M-0001")
    lines = out.splitlines()
    assert lines[0] == "Added prosumer meter M-0001 to grid demo, owner carlos."
    secret = lines[1].removeprefix("Secret: ")
    assert secret_unseal(meter.secret_sealed, "M-0001") == secret
    assert mosquitto_hash_matches(secret, meter.secret_hash)
    assert lines[2] == "Store it in the meter now: it will not be shown again."
    assert (meter.kind, meter.label, meter.owner.username, meter.public) == ("prosumer", "12 Elm St", "carlos", False)


def test_meter_add_a_public_street_light_without_owner():
    grid_make("demo")

    out = _run("meter_add", "demo", "LIGHT-7", "--kind", "consumer", "--public")

    meter = Meter.objects.get(public_id="LIGHT-7")
    assert (meter.public, meter.owner, meter.kind) == (True, None, "consumer")
    assert out.startswith("Added consumer meter LIGHT-7 to grid demo.\nSecret: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "M-0002", "--kind", "consumer"], "no grid called 'nowhere'"),
        (["demo", "M-0001", "--kind", "consumer"], "meter not added: public_id: meter 'M-0001' already exists"),
        (["demo", "bad id!", "--kind", "consumer"], "meter not added: public_id: letters, digits, - and _"),
        (["demo", "M" * 41, "--kind", "consumer"], "public_id: letters, digits, - and _ (max 40)"),
        (["demo", "M" * 150, "--kind", "consumer"], "public_id: letters, digits, - and _ (max 40)"),
        (["demo", "M-0002", "--kind", "consumer", "--owner", "nobody"], "owner: no resident named 'nobody'"),
        (["demo", "M-0002", "--kind", "seller"], "argument --kind: invalid choice: 'seller'"),
        (["demo", "M-0002"], "the following arguments are required: --kind"),
        (["demo", "--kind", "consumer"], "the following arguments are required: meter_id"),
        (["demo", "M-0002", "--kind", "consumer", "--label", "l" * 121], "label: Ensure this value has at most 120"),
    ],
)
def test_meter_add_refuses_bad_input_and_writes_nothing(args, message):
    meter_make(grid_make("demo"), "M-0001")
    accounts_before = Account.objects.count()

    with pytest.raises(CommandError) as refused:
        _run("meter_add", *args)

    assert message in str(refused.value)
    assert list(Meter.objects.values_list("public_id", flat=True)) == ["M-0001"]
    assert Account.objects.count() == accounts_before


def test_meter_add_help_lists_the_kinds(capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("meter_add", "--help")

    help_text = capsys.readouterr().out
    assert exited.value.code == 0
    assert "{consumer,producer,prosumer}" in help_text
    assert "printed once" in help_text
