"""Every API route × (anonymous, resident A, resident B, operator), aimed at
A's objects: the expected status each time, and no response ever carries
the other resident's data. A route added without a row here fails the test."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from utility.payments.services import connect_onboarding_url, topup_create, withdrawal_request
from utility.residents.services import wallet_credit
from web.apis import urls as api_urls

from .conftest import NOW, K, town_build

ANON, A, B, OP = "anonymous", "A", "B", "operator"
WHO = (ANON, A, B, OP)


def S(anon: int, a: int, b: int, op: int) -> dict[str, int]:
    return dict(zip(WHO, (anon, a, b, op), strict=True))


RESIDENT_OWN = S(401, 200, 404, 200)  # A's meter: A and staff see it; to B it does not exist
EVERY_USER = S(401, 200, 200, 200)
STAFF_ONLY = S(401, 403, 403, 200)
PUBLIC = S(200, 200, 200, 200)

# (url name, method, path args, body, expected statuses). Objects are A's.
MATRIX = [
    ("schema", "get", [], None, PUBLIC),
    ("docs", "get", [], None, PUBLIC),
    ("redoc", "get", [], None, PUBLIC),
    ("token", "post", [], {"username": "nobody", "password": "wrong"}, S(400, 400, 400, 400)),
    ("wallet", "get", [], None, EVERY_USER),
    ("meters", "get", [], None, EVERY_USER),
    ("meter", "get", ["{a_meter}"], None, RESIDENT_OWN),
    ("meter_readings", "get", ["{a_meter}"], None, RESIDENT_OWN),
    ("meter_settlements", "get", ["{a_meter}"], None, RESIDENT_OWN),
    ("meter_decisions", "get", ["{a_meter}"], None, RESIDENT_OWN),
    # Anyone may fund any meter (a rental, a neighbour's): never shown more for it.
    ("meter_fund", "post", ["{a_meter}"], {"amount_uk": K, "request_id": "{who}-fund"}, S(401, 201, 201, 201)),
    ("public_meters", "get", [], None, EVERY_USER),
    ("settlements", "get", [], None, EVERY_USER),
    ("topups", "get", [], None, EVERY_USER),
    ("topups", "post", [], {"amount_cents": 500}, S(401, 201, 201, 201)),
    ("topup", "get", ["{a_topup}"], None, S(401, 200, 404, 404)),
    ("withdrawals", "get", [], None, EVERY_USER),
    # Only A has a connected bank account.
    ("withdrawals", "post", [], {"amount_uk": 2 * K, "request_id": "{who}-w"}, S(401, 201, 400, 400)),
    ("withdrawal", "get", ["{a_withdrawal}"], None, S(401, 200, 404, 404)),
    ("ops_grids", "get", [], None, STAFF_ONLY),
    ("ops_grid", "get", ["town"], None, STAFF_ONLY),
    ("ops_grid", "patch", ["town"], {"fee_fixed_uk": 20_000}, STAFF_ONLY),
    ("ops_meters", "get", [], None, STAFF_ONLY),
    (
        "ops_meters",
        "post",
        [],
        {"grid": "town", "public_id": "NEW-{who}", "kind": "consumer"},
        S(401, 403, 403, 201),
    ),
    ("ops_meter", "get", ["{a_meter}"], None, STAFF_ONLY),
    ("ops_meter", "patch", ["{a_meter}"], {"label": "renamed by {who}"}, STAFF_ONLY),
    ("ops_meter_secret", "post", ["{a_meter}"], {"reason": "rotation"}, STAFF_ONLY),
    ("ops_meter_force", "post", ["{a_meter}"], {"state": "disconnect", "reason": "test"}, S(401, 403, 403, 201)),
    ("ops_meter_release", "post", ["{a_meter}"], {"reason": "test"}, S(401, 403, 403, 201)),
    ("ops_settlements", "get", [], None, STAFF_ONLY),
    ("ops_settlement", "get", ["{a_run}"], None, STAFF_ONLY),
    ("ops_settlement_lines", "get", ["{a_run}"], None, STAFF_ONLY),
    ("ops_alerts", "get", [], None, STAFF_ONLY),
    ("token", "delete", [], None, S(401, 204, 204, 204)),
]


def test_the_matrix_covers_every_route_and_method():
    covered = {(name, method) for name, method, *_ in MATRIX}
    for pattern in api_urls.urlpatterns:
        view = pattern.callback.cls
        methods = {m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)}
        assert methods, pattern.name
        for method in methods:
            assert (pattern.name, method) in covered, f"no permission row for {method.upper()} {pattern.pattern}"


@pytest.fixture
def world(db, django_capture_on_commit_callbacks):
    town = town_build()
    wallet_credit("op", 10 * K, "test coins", "tester", "seed-op", NOW)
    with django_capture_on_commit_callbacks(execute=True):
        from utility.payments.fake import fake_onboarding_finish

        url = connect_onboarding_url(town.alice, NOW)
        fake_onboarding_finish(url.rstrip("/").rsplit("/", 1)[-1])
    topup = topup_create(town.alice, 1000, NOW)
    withdrawal = withdrawal_request(town.alice, K, "seed-withdrawal", NOW)
    run_id = town.a_home.settlement_lines.first().run_id
    values = {"a_meter": "A-HOME", "a_topup": str(topup.pk), "a_withdrawal": str(withdrawal.pk), "a_run": str(run_id)}
    clients = {ANON: APIClient()}
    for who, user in ((A, town.alice), (B, town.bob), (OP, town.operator)):
        clients[who] = APIClient()
        clients[who].force_authenticate(user)
    return town, values, clients


# What must never reach the other resident: B's identity and meter to A
# (and to anyone anonymous), A's private details to B.
B_PRIVATE = ("B-HOME", "Bob's house", "bob")
A_PRIVATE = ("Alice's house", "alice", "-3300000")


def test_every_route_for_everyone(world, monkeypatch):
    # Permissions only: the matrix sends hundreds of requests from one address,
    # which the throttles (tested on their own in test_api.py) would rightly stop.
    monkeypatch.setattr(SimpleRateThrottle, "allow_request", lambda self, request, view: True)
    _town, values, clients = world
    failures = []
    for name, method, args, body, expected in MATRIX:
        for who in WHO:
            fill = {**values, "who": who.lower()}
            path = reverse(f"api:{name}", args=[a.format(**fill) for a in args])
            data = json.loads(json.dumps(body).replace("{who}", fill["who"])) if body is not None else None
            response = getattr(clients[who], method)(path, data, format="json")
            if response.status_code != expected[who]:
                failures.append(f"{method.upper()} {path} as {who}: {response.status_code}, expected {expected[who]}")
            content = response.content.decode()
            if name in ("schema", "docs", "redoc"):
                continue
            leaked = B_PRIVATE if who in (ANON, A) else A_PRIVATE if who == B else ()
            for marker in leaked:
                if marker in content:
                    failures.append(f"{method.upper()} {path} as {who} leaks {marker!r}")
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, f"{path}: not the error body"
    assert not failures, "\n".join(failures)
