"""schemathesis against the OpenAPI schema, in process (the WSGI app, the
test database): generated requests to every operation, as a resident with
meters and as an operator, find no server error. Bounded: a few examples per
operation, no deadline (the database is shared with other test runs)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from utility.wsgi import application

from .conftest import town_build

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 10


# Loaded once at collection (the schema view needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def wsgi_calls(web_settings):
    # Generous limits: throttling is tested elsewhere; here it would only
    # hide the endpoints behind 429s.
    rates = {"anon": "100000/min", "user": "100000/min", "money": "100000/min", "token": "100000/min"}
    web_settings.REST_FRAMEWORK = {**web_settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    from rest_framework.throttling import SimpleRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = rates
    # The WSGI app closes the database connection after each request; the
    # test's transaction must survive (Django's test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        SimpleRateThrottle.THROTTLE_RATES = original


@pytest.fixture
def tokens(db, wsgi_calls):
    town = town_build()
    return {
        who: Token.objects.create(user=user).key
        for who, user in (("resident", town.alice), ("operator", town.operator))
    }


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case, tokens):
    who = "operator" if case.path.startswith("/api/ops/") else "resident"
    response = case.call_and_validate(headers={"Authorization": f"Token {tokens[who]}"}, checks=[not_a_server_error])
    if case.path == "/api/wallet/" and case.method == "GET":
        assert response.status_code == 200  # the token works: the other operations are reached, not just refused
