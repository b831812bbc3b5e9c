"""The REST API end to end through DRF: what residents and operators can do,
the error bodies, pagination and filters, throttling."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from meters.models import Meter, MeterDecision
from utility.audit.models import OperatorAction
from utility.ledger.models import Account, Entry, Transaction

from .conftest import PASSWORD, K

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def books() -> tuple:
    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        list(Account.objects.order_by("code").values_list("code", "balance_uk")),
    )


def test_token_then_calls_with_it(api, db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("carol", password=PASSWORD)
    response = api.post(reverse("api:token"), {"username": "carol", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(reverse("api:wallet")).json()["balance_uk"] == 0
    assert api.delete(reverse("api:token")).status_code == 204
    assert api.get(reverse("api:wallet")).status_code == 401


def test_token_refused_with_a_clear_body(api, db):
    response = api.post(reverse("api:token"), {"username": "nobody", "password": "x"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"status": 400, "code": "refused", "message": "Unable to log in with these credentials."}
    }


def test_unauthenticated_is_401_with_the_error_body(api, town):
    response = api.get(reverse("api:wallet"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_wallet_and_own_meters(town):
    client = as_user(town.alice)
    assert client.get(reverse("api:wallet")).json()["balance_uk"] == 50 * K
    meters = client.get(reverse("api:meters")).json()
    assert meters["count"] == 2 and {m["public_id"] for m in meters["results"]} == {"A-HOME", "A-ROOF"}
    home = client.get(reverse("api:meter", args=["A-HOME"])).json()
    # Below zero without credit: it lasts no interval (not decided yet, so not cut).
    assert home["balance_uk"] == -3_300_000 and home["state"] == "low" and home["grid"] == "town"
    producers = client.get(reverse("api:meters"), {"kind": "producer"}).json()
    assert [m["public_id"] for m in producers["results"]] == ["A-ROOF"]


def test_public_meter_shows_only_id_label_kind_balance(town):
    body = as_user(town.bob).get(reverse("api:meter", args=["SL-1"])).json()
    assert body == {"public_id": "SL-1", "label": "Street light, Elm St", "kind": "consumer", "balance_uk": -450_000}
    search = as_user(town.bob).get(reverse("api:public_meters"), {"search": "elm"}).json()
    assert [m["public_id"] for m in search["results"]] == ["SL-1"]


def test_readings_settlements_decisions_with_window_and_pagination(town):
    client = as_user(town.alice)
    readings = client.get(reverse("api:meter_readings", args=["A-HOME"]), {"limit": 2}).json()
    assert readings["count"] == 3 and len(readings["results"]) == 2 and readings["next"]
    assert [r["import_wh"] for r in readings["results"]] == [1200, 1100]
    window = client.get(
        reverse("api:meter_readings", args=["A-HOME"]),
        {"since": "2026-01-01T01:00:00Z", "until": "2026-01-01T02:00:00Z"},
    ).json()
    assert [r["import_wh"] for r in window["results"]] == [1100]
    lines = client.get(reverse("api:meter_settlements", args=["A-HOME"])).json()["results"]
    assert [line["paid_uk"] for line in lines] == [1_200_000, 1_100_000, 1_000_000]
    assert all(line["fee_share_uk"] > 0 for line in lines)
    assert lines[0]["grid_loss_wh"] == 3000 - 3350
    everything = client.get(reverse("api:settlements")).json()
    assert everything["count"] == 6  # three hours, two meters
    assert client.get(reverse("api:settlements"), {"meter": "A-ROOF"}).json()["count"] == 3
    assert client.get(reverse("api:meter_decisions", args=["A-HOME"])).json()["count"] == 0


def test_fund_any_meter_once_per_request_id(town, django_capture_on_commit_callbacks):
    client = as_user(town.bob)
    request_id = uuid.uuid4().hex
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(reverse("api:meter_fund", args=["SL-1"]), {"amount_uk": 5 * K, "request_id": request_id})
    assert first.status_code == 201
    assert first.json()["meter_now"] == {
        "public_id": "SL-1",
        "label": "Street light, Elm St",
        "kind": "consumer",
        "balance_uk": 4_550_000,
    }
    again = client.post(reverse("api:meter_fund", args=["SL-1"]), {"amount_uk": 5 * K, "request_id": request_id})
    assert again.status_code == 200 and again.json()["created"] is False
    assert Account.objects.get(owner=town.bob, kind="wallet").balance_uk == 45 * K
    private = client.post(reverse("api:meter_fund", args=["A-HOME"]), {"amount_uk": K, "request_id": "p1"})
    assert private.status_code == 201 and private.json()["meter_now"] is None  # funded, not shown


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"amount_uk": 0, "request_id": "x"}, 400, "amount_uk"),
        ({"amount_uk": -5, "request_id": "x"}, 400, "amount_uk"),
        ({"amount_uk": "2.5", "request_id": "x"}, 400, "amount_uk"),
        ({"amount_uk": 10**20, "request_id": "x"}, 400, "amount_uk"),
        ({"amount_uk": 1}, 400, "request_id"),
        ({"amount_uk": 1, "request_id": "x" * 101}, 400, "request_id"),
        ({"amount_uk": 51 * K, "request_id": "too-much"}, 400, None),
    ],
)
def test_bad_funding_is_refused_clearly_and_moves_nothing(town, body, status, field):
    before = books()
    response = as_user(town.bob).post(reverse("api:meter_fund", args=["SL-1"]), body, format="json")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if field:
        assert error["code"] == "invalid" and field in error["fields"]
    else:
        assert error["code"] == "refused" and "your wallet holds" in error["message"]
    assert books() == before


def test_malformed_json_is_a_clear_400(town):
    client = as_user(town.bob)
    response = client.post(reverse("api:meter_fund", args=["SL-1"]), data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_topup_opens_a_checkout_and_lists(town):
    client = as_user(town.alice)
    response = client.post(reverse("api:topups"), {"amount_cents": 1000}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (
        body["coins_uk"] == 10 * K and body["status"] == "open" and "/payments/fake/checkout/" in body["checkout_url"]
    )
    assert client.get(reverse("api:topup", args=[body["id"]])).status_code == 200
    assert as_user(town.bob).get(reverse("api:topup", args=[body["id"]])).status_code == 404
    too_small = client.post(reverse("api:topups"), {"amount_cents": 5}, format="json")
    assert too_small.status_code == 400 and "between 100 and 1000000 cents" in too_small.json()["error"]["message"]


def test_withdrawal_needs_a_connected_account(town):
    before = books()
    response = as_user(town.alice).post(
        reverse("api:withdrawals"), {"amount_uk": 5 * K, "request_id": "w1"}, format="json"
    )
    assert response.status_code == 400
    assert "connect your bank account" in response.json()["error"]["message"]
    assert books() == before


def test_operator_grid_rules_change_is_recorded(town):
    client = as_user(town.operator)
    response = client.patch(reverse("api:ops_grid", args=["town"]), {"tariff_uk_per_kwh": 2 * K}, format="json")
    assert response.status_code == 200 and response.json()["tariff_uk_per_kwh"] == 2 * K
    action = OperatorAction.objects.get(action="grid_rules_change")
    assert action.actor == "op" and action.detail == {"tariff_uk_per_kwh": [K, 2 * K]}
    bad = client.patch(reverse("api:ops_grid", args=["town"]), {"fee_bp": 20_000}, format="json")
    assert bad.status_code == 400 and "fee_bp" in bad.json()["error"]["fields"]


def test_operator_registers_a_meter_and_sees_the_secret_once(town):
    client = as_user(town.operator)
    body = {"grid": "town", "public_id": "C-HOME", "kind": "consumer", "owner": "bob", "label": "Carol's"}
    response = client.post(reverse("api:ops_meters"), body, format="json")
    assert response.status_code == 201
    secret = response.json()["secret"]
    assert len(secret) >= 20 and response.json()["owner"] == "bob"
    assert "secret" not in client.get(reverse("api:ops_meter", args=["C-HOME"])).json()
    again = client.post(reverse("api:ops_meters"), body, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["error"]["message"]
    rotated = client.post(reverse("api:ops_meter_secret", args=["C-HOME"]), {"reason": "lost"}, format="json")
    assert rotated.status_code == 200 and rotated.json()["secret"] != secret
    actions = list(OperatorAction.objects.filter(actor="op").order_by("at", "pk").values_list("action", flat=True))
    assert actions == ["meter_register", "meter_secret_reissue"]
    assert not OperatorAction.objects.filter(detail__icontains=secret).exists()


def test_operator_forces_a_disconnect_with_a_reason_and_releases(town):
    client = as_user(town.operator)
    no_reason = client.post(reverse("api:ops_meter_force", args=["B-HOME"]), {"state": "disconnect"}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]["fields"]
    forced = client.post(
        reverse("api:ops_meter_force", args=["B-HOME"]),
        {"state": "disconnect", "reason": "tamper check"},
        format="json",
    )
    assert forced.status_code == 201 and forced.json()["issued_by"] == "op"
    assert Meter.objects.get(pk=town.b_home.pk).supply_state == "disconnect"
    assert OperatorAction.objects.get(action="meter_force_state").reason == "tamper check"
    released = client.post(reverse("api:ops_meter_release", args=["B-HOME"]), {"reason": "checked"}, format="json")
    assert released.status_code == 201
    not_held = client.post(reverse("api:ops_meter_release", args=["B-HOME"]), {"reason": "again"}, format="json")
    assert not_held.status_code == 400 and "not held" in not_held.json()["error"]["message"]


def test_operator_marks_never_disconnect_and_the_meter_comes_back(town):
    client = as_user(town.operator)
    client.post(reverse("api:ops_meter_force", args=["SL-1"]), {"state": "disconnect", "reason": "x"}, format="json")
    client.post(reverse("api:ops_meter_release", args=["SL-1"]), {"reason": "y"}, format="json")
    assert Meter.objects.get(pk=town.light.pk).supply_state == "disconnect"  # its balance is below zero
    response = client.patch(reverse("api:ops_meter", args=["SL-1"]), {"never_disconnect": True}, format="json")
    assert response.status_code == 200 and response.json()["never_disconnect"] is True
    assert response.json()["supply_state"] == "connect"
    assert MeterDecision.objects.filter(meter=town.light).latest("seq").reason == "exempt"
    change = OperatorAction.objects.get(action="meter_settings_change")
    assert change.detail == {"never_disconnect": [False, True]}
    cannot = client.post(
        reverse("api:ops_meter_force", args=["SL-1"]), {"state": "disconnect", "reason": "z"}, format="json"
    )
    assert cannot.status_code == 400 and "never-disconnect" in cannot.json()["error"]["message"]


def test_operator_settlements_and_alerts(town):
    client = as_user(town.operator)
    runs = client.get(reverse("api:ops_settlements"), {"grid": "town"}).json()
    assert runs["count"] == 3
    run_id = runs["results"][0]["id"]
    assert client.get(reverse("api:ops_settlement", args=[run_id])).json()["import_wh"] == 3350
    assert client.get(reverse("api:ops_settlement_lines", args=[run_id])).json()["count"] == 4
    alerts = client.get(reverse("api:ops_alerts"), {"hours": 24 * 90}).json()
    assert len(alerts["settlement_alerts"]) == 3
    assert {row["meter"] for row in alerts["running_out"]} >= {"A-HOME", "B-HOME", "SL-1"}
    assert set(alerts["mirror"]) >= {"reachable", "lag_s"}
    bad = client.get(reverse("api:ops_settlements"), {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["fields"]


def test_throttling_answers_429_with_the_error_body(town):
    from rest_framework.throttling import SimpleRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**original, "user": "3/min"}
    try:
        client = as_user(town.alice)
        codes = [client.get(reverse("api:wallet")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        body = client.get(reverse("api:wallet")).json()["error"]
        assert body["code"] == "throttled" and "Request was throttled" in body["message"]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original


def test_docs_and_schema_load_with_local_assets(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"openapi" in schema.content
    docs = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower() and "https://" not in docs


WRITES = [
    ("post", "api:meter_fund", ["SL-1"], "bob"),
    ("post", "api:topups", [], "bob"),
    ("post", "api:withdrawals", [], "bob"),
    ("patch", "api:ops_grid", ["town"], "op"),
    ("post", "api:ops_meters", [], "op"),
    ("patch", "api:ops_meter", ["B-HOME"], "op"),
    ("post", "api:ops_meter_force", ["B-HOME"], "op"),
    ("post", "api:ops_meter_release", ["B-HOME"], "op"),
    ("post", "api:token", [], None),
]


def everything() -> tuple:
    from utility.payments.models import TopUp, Withdrawal

    return (
        books(),
        list(Meter.objects.order_by("pk").values_list("public_id", "label", "never_disconnect", "supply_state")),
        OperatorAction.objects.count(),
        MeterDecision.objects.count(),
        TopUp.objects.count(),
        Withdrawal.objects.count(),
    )


@pytest.mark.parametrize(("method", "name", "args", "who"), WRITES)
@pytest.mark.parametrize(
    "payload",
    [
        {"amount_uk": "lots", "amount_cents": [], "state": "sideways", "fee_bp": -1, "grid": 7, "public_id": "",
         "kind": None, "reason": "", "never_disconnect": "perhaps", "username": "", "request_id": ""},
        "not json at all",
    ],
)  # fmt: skip
def test_every_write_refuses_bad_input_clearly_and_changes_nothing(town, method, name, args, who, payload):
    users = {"bob": town.bob, "op": town.operator}
    client = as_user(users[who]) if who else APIClient()
    before = everything()
    if isinstance(payload, str):
        response = getattr(client, method)(reverse(name, args=args), data=payload, content_type="application/json")
    else:
        response = getattr(client, method)(reverse(name, args=args), payload, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["status"] == 400 and error["message"] and error["code"] in ("invalid", "parse_error", "refused")
    assert everything() == before
