"""The operators' admin: every action goes through a service and is recorded;
bad input is refused clearly and changes nothing; the books are read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from meters.models import Grid, Meter, MeterDecision
from utility.audit.models import OperatorAction

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, town):
    client.force_login(town.operator)
    return client


def test_register_a_meter_shows_its_secret_once(admin_client, town):
    assert admin_client.get(reverse("admin:meters_meter_add")).url == reverse("admin:meters_meter_register")
    data = {"grid": town.grid.pk, "public_id": "C-HOME", "kind": "consumer", "label": "Carol's", "owner": "bob"}
    response = admin_client.post(reverse("admin:meters_meter_register"), data)
    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret in response.content.decode() and "not shown again" in response.content.decode()
    meter = Meter.objects.get(public_id="C-HOME")
    assert meter.owner == town.bob and secret not in meter.secret_sealed
    change_page = admin_client.get(reverse("admin:meters_meter_change", args=[meter.pk])).content.decode()
    assert secret not in change_page
    action = OperatorAction.objects.get(action="meter_register")
    assert action.actor == "op" and action.target == "meter:C-HOME" and secret not in str(action.detail)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"public_id": "A-HOME", "kind": "consumer"}, "already exists"),
        ({"public_id": "bad id!", "kind": "consumer"}, "letters, digits, - and _"),
        ({"public_id": "X1", "kind": "consumer", "owner": "nobody"}, "no resident named"),
        ({"public_id": "X2", "kind": "teapot"}, "Select a valid choice"),
    ],
)
def test_bad_registration_is_refused_and_changes_nothing(admin_client, town, data, message):
    before = Meter.objects.count()
    response = admin_client.post(reverse("admin:meters_meter_register"), {"grid": town.grid.pk, **data})
    assert response.status_code == 200 and message in response.content.decode()
    assert Meter.objects.count() == before
    assert not OperatorAction.objects.filter(action="meter_register").exists()


def test_rotate_the_secret_asks_why_and_shows_the_new_one(admin_client, town):
    url = reverse("admin:meters_meter_rotate", args=[town.b_home.pk])
    assert "stops working at once" in admin_client.get(url).content.decode()
    sealed = Meter.objects.get(pk=town.b_home.pk).secret_sealed
    empty = admin_client.post(url, {"reason": ""})
    assert "This field is required." in empty.content.decode()
    assert Meter.objects.get(pk=town.b_home.pk).secret_sealed == sealed
    done = admin_client.post(url, {"reason": "lost the board"})
    assert done.context["secret"] and Meter.objects.get(pk=town.b_home.pk).secret_sealed != sealed
    assert OperatorAction.objects.get(action="meter_secret_reissue").reason == "lost the board"


def test_force_disconnect_from_the_list_with_a_reason(admin_client, town):
    changelist = reverse("admin:meters_meter_changelist")
    ask = admin_client.post(changelist, {"action": "force_disconnect", "_selected_action": [town.b_home.pk]})
    assert ask.status_code == 200 and "The reason is recorded" in ask.content.decode()
    assert not MeterDecision.objects.filter(meter=town.b_home).exists()
    done = admin_client.post(
        changelist, {"action": "force_disconnect", "_selected_action": [town.b_home.pk], "reason": "unpaid repair"}
    )
    assert done.status_code == 302
    decision = MeterDecision.objects.get(meter=town.b_home)
    assert (decision.state, decision.reason, decision.issued_by) == ("disconnect", "operator", "op")
    record = OperatorAction.objects.get(action="meter_force_state")
    assert record.reason == "unpaid repair" and record.target == "meter:B-HOME"


def test_force_from_the_meter_page_and_release(admin_client, town):
    force = reverse("admin:meters_meter_force", args=[town.a_home.pk, "disconnect"])
    admin_client.post(force, {"reason": "inspection"})
    assert Meter.objects.get(pk=town.a_home.pk).supply_state == "disconnect"
    release = reverse("admin:meters_meter_force", args=[town.a_home.pk, "release"])
    admin_client.post(release, {"reason": "inspected"})
    assert MeterDecision.objects.filter(meter=town.a_home).latest("seq").issued_by == "op"
    again = admin_client.post(release, {"reason": "twice"}, follow=True)
    assert "is not held by an operator" in again.content.decode()


def test_never_disconnect_meters_cannot_be_forced_off(admin_client, town):
    change = reverse("admin:meters_meter_change", args=[town.light.pk])
    form = {"label": town.light.label, "public": "on", "never_disconnect": "on", "active": "on", "reason": "a light"}
    assert admin_client.post(change, form).status_code == 302
    record = OperatorAction.objects.get(action="meter_settings_change")
    assert record.detail == {"never_disconnect": [False, True]} and record.reason == "a light"
    response = admin_client.post(
        reverse("admin:meters_meter_force", args=[town.light.pk, "disconnect"]), {"reason": "x"}, follow=True
    )
    assert "never-disconnect" in response.content.decode()
    assert Meter.objects.get(pk=town.light.pk).supply_state == "connect"


def test_grid_rules_change_is_recorded_and_bad_rules_refused(admin_client, town):
    url = reverse("admin:meters_grid_change", args=[town.grid.pk])
    grid = town.grid
    form = {
        "name": grid.name,
        "tariff_uk_per_kwh": 1_500_000,
        "fee_fixed_uk": grid.fee_fixed_uk,
        "fee_bp": grid.fee_bp,
        "credit_limit_uk": grid.credit_limit_uk,
        "loss_alert_bp": grid.loss_alert_bp,
        "settlement_grace_s": grid.settlement_grace_s,
        "coin_price_cents": grid.coin_price_cents,
        "currency": grid.currency,
    }
    assert admin_client.post(url, form).status_code == 302
    assert Grid.objects.get(pk=grid.pk).tariff_uk_per_kwh == 1_500_000
    assert OperatorAction.objects.get(action="grid_rules_change").detail == {
        "tariff_uk_per_kwh": [1_000_000, 1_500_000]
    }
    bad = admin_client.post(url, {**form, "fee_bp": 20_000})
    assert bad.status_code == 200 and "cannot exceed 10000" in bad.content.decode()
    assert Grid.objects.get(pk=grid.pk).fee_bp == grid.fee_bp
    assert OperatorAction.objects.filter(action="grid_rules_change").count() == 1


def test_resident_changes_are_recorded_without_passwords(admin_client, town):
    url = reverse("admin:auth_user_change", args=[town.bob.pk])
    page = admin_client.get(url)
    assert "B-HOME" in page.content.decode()  # the resident's meters, inline
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update({"email": "robert@example.org", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    data.update({f"meters-{key}": value for key, value in {"TOTAL_FORMS": 1, "INITIAL_FORMS": 1}.items()})
    data.pop("groups", None)
    data.pop("user_permissions", None)
    data.pop("last_login", None)
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    record = OperatorAction.objects.get(action="resident_change")
    assert record.target == "user:bob" and "Email address" in str(record.detail)
    password_url = reverse("admin:auth_user_password_change", args=[town.bob.pk])
    admin_client.post(password_url, {"password1": "a-new-long-pass-99", "password2": "a-new-long-pass-99"})
    last = OperatorAction.objects.filter(action="resident_change").latest("pk")
    assert "a-new-long-pass-99" not in str(last.detail)


def test_residents_list_shows_wallets(admin_client, town):
    page = admin_client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert "50.000000" in page


@pytest.mark.parametrize(
    "model",
    [
        "ledger_account",
        "ledger_transaction",
        "ledger_entry",
        "meters_rejectedreading",
        "meters_reading",
        "meters_meterdecision",
        "settlement_settlementrun",
        "settlement_settlementline",
        "audit_operatoraction",
    ],
)
def test_the_books_are_read_only_with_search_and_filters(admin_client, town, model):
    changelist = admin_client.get(reverse(f"admin:{model}_changelist"), {"q": "town"})
    assert changelist.status_code == 200
    model_admin = changelist.context["cl"].model_admin
    assert model_admin.search_fields and (model_admin.list_filter or model_admin.date_hierarchy)
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 403


def test_staff_only(client, town):
    client.force_login(town.alice)
    assert client.get(reverse("admin:meters_meter_register")).status_code == 302
    assert client.post(reverse("admin:meters_meter_rotate", args=[town.a_home.pk]), {"reason": "x"}).status_code == 302
