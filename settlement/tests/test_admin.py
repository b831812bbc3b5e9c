"""The admin pages for the ledger, grids, meters and settlement: they show the
books, refuse edits to records, and validate grid rules like the service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from meters.models import Grid
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make, user_make
from settlement.models import SettlementLine, SettlementRun
from settlement.services import settlement_close
from utility.ledger.models import Entry, Transaction

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    operator = user_make("operator", is_staff=True, is_superuser=True)
    client.force_login(operator)
    return client


@pytest.fixture
def settled_grid() -> Grid:
    grid = grid_make("demo")
    buyer, seller = meter_make(grid, "buyer", "consumer"), meter_make(grid, "seller", "producer")
    reading_make(buyer, T0, import_wh=2_000)
    reading_make(seller, T0, export_wh=2_500)
    settlement_close(grid.pk, T0, T0 + 2 * HOUR)
    return grid


CHANGELISTS = [
    "ledger_account",
    "ledger_transaction",
    "ledger_entry",
    "meters_grid",
    "meters_meter",
    "meters_reading",
    "meters_rejectedreading",
    "meters_meterdecision",
    "settlement_settlementrun",
    "settlement_settlementline",
]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_every_changelist_shows(operator_client, settled_grid, name):
    response = operator_client.get(reverse(f"admin:{name}_changelist"))

    assert response.status_code == 200


def test_the_account_list_shows_balances_in_coins(operator_client, settled_grid):
    response = operator_client.get(reverse("admin:ledger_account_changelist"))

    assert "-2.000000" in response.content.decode()  # the buyer's meter account


def test_a_run_links_to_its_lines(operator_client, settled_grid):
    run = SettlementRun.objects.get()
    response = operator_client.get(reverse("admin:settlement_settlementline_changelist"), {"run__id__exact": run.pk})

    assert response.status_code == 200
    assert set(response.context["cl"].queryset) == set(SettlementLine.objects.filter(run=run))


@pytest.mark.parametrize(
    "name",
    ["ledger_entry", "ledger_transaction", "meters_reading", "settlement_settlementrun", "settlement_settlementline"],
)
def test_records_cannot_be_added(operator_client, settled_grid, name):
    response = operator_client.get(reverse(f"admin:{name}_add"))

    assert response.status_code == 403


def test_a_transaction_shows_read_only_and_cannot_be_deleted(operator_client, settled_grid):
    txn = Transaction.objects.get()

    shown = operator_client.get(reverse("admin:ledger_transaction_change", args=[txn.pk]))
    deleted = operator_client.post(reverse("admin:ledger_transaction_delete", args=[txn.pk]), {"post": "yes"})

    assert shown.status_code == 200
    assert txn.idempotency_key in shown.content.decode()
    assert deleted.status_code == 403
    assert Transaction.objects.filter(pk=txn.pk).exists()
    assert Entry.objects.filter(transaction=txn).count() == 3


def _grid_form(grid: Grid, **changes) -> dict:
    data = {
        "name": grid.name,
        "tariff_uk_per_kwh": grid.tariff_uk_per_kwh,
        "fee_fixed_uk": grid.fee_fixed_uk,
        "fee_bp": grid.fee_bp,
        "credit_limit_uk": grid.credit_limit_uk,
        "loss_alert_bp": grid.loss_alert_bp,
        "settlement_grace_s": grid.settlement_grace_s,
        "coin_price_cents": grid.coin_price_cents,
        "currency": grid.currency,
    }
    return {**data, **changes}


def test_an_operator_changes_a_grids_tariff(operator_client):
    grid = grid_make("demo")

    response = operator_client.post(
        reverse("admin:meters_grid_change", args=[grid.pk]), _grid_form(grid, tariff_uk_per_kwh=800_000)
    )

    assert response.status_code == 302
    grid.refresh_from_db()
    assert grid.tariff_uk_per_kwh == 800_000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fee_bp": 10_001}, "fee_bp"),
        ({"tariff_uk_per_kwh": -1}, "tariff_uk_per_kwh"),
        ({"coin_price_cents": 0}, "coin_price_cents"),
        ({"fee_fixed_uk": "0.5"}, "fee_fixed_uk"),
    ],
)
def test_bad_grid_rules_in_the_admin_are_refused_and_change_nothing(operator_client, changes, field):
    grid = grid_make("demo")

    response = operator_client.post(reverse("admin:meters_grid_change", args=[grid.pk]), _grid_form(grid, **changes))

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    fresh = Grid.objects.get(pk=grid.pk)
    assert (fresh.fee_bp, fresh.tariff_uk_per_kwh, fresh.coin_price_cents, fresh.fee_fixed_uk) == (
        0,
        1_000_000,
        100,
        10_000,
    )


def test_grids_come_from_the_cli_and_meters_from_the_registration_page(operator_client):
    assert operator_client.get(reverse("admin:meters_grid_add")).status_code == 403
    # Meters are registered through the page that shows their secret once.
    response = operator_client.get(reverse("admin:meters_meter_add"))
    assert response.status_code == 302
    assert response["Location"].endswith("/admin/meters/meter/register/")


def test_a_meters_secret_never_shows_in_the_admin(operator_client):
    meter = meter_make(grid_make("demo"), "M-0001")

    page = operator_client.get(reverse("admin:meters_meter_change", args=[meter.pk])).content.decode()

    assert meter.secret_sealed not in page
    assert meter.secret_hash not in page
