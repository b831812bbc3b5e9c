"""A decision always names a meter that exists, and that meter stays.

The decision's foreign key is checked per statement by PostgreSQL triggers
(meters migration 0005) instead of per row at commit. Raw SQL goes around the
ORM here to show the database itself refuses a dangling decision.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from meters.decisions import decision_publish
from meters.models import MeterDecision
from meters.tests.factories import grid_make, meter_make

MISSING_ID = 987_654_321

COLUMNS = "meter_id, seq, state, reason, balance_uk, issued_at, issued_by, payload, published"
INSERT_DECISION = (
    f"INSERT INTO meters_meterdecision ({COLUMNS})"
    " VALUES (%s, %s, 'connect', 'test', 0, now(), 'system', '{}', false)"
)
INSERT_DECISIONS = (
    f"INSERT INTO meters_meterdecision ({COLUMNS})"
    " SELECT m, 1, 'connect', 'test', 0, now(), 'system', '{}', false FROM unnest(%s::bigint[]) AS m"
)


@pytest.fixture(autouse=True)
def _postgresql_only(settings):
    if connection.vendor != "postgresql":
        pytest.fail("the reference triggers live in PostgreSQL: run with DATABASE_URL=postgres://...")
    settings.MQTT_PUBLISHER = "memory"


def _sql(statement: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.mark.django_db(transaction=True)
def test_a_decision_naming_a_missing_meter_is_refused_and_its_meter_never_changes():
    grid = grid_make("demo")
    carlos, other = meter_make(grid, "carlos"), meter_make(grid, "other")
    decision_publish(carlos, "disconnect", "test")
    decision = MeterDecision.objects.get(meter=carlos)
    no_meter = rf'"meters_meter": meter_id = {MISSING_ID} does not exist'
    with pytest.raises(IntegrityError, match=no_meter), transaction.atomic():
        _sql(INSERT_DECISION, [MISSING_ID, 1])
    # One bad row refuses its whole statement, the good row with it.
    with pytest.raises(IntegrityError, match=no_meter), transaction.atomic():
        _sql(INSERT_DECISIONS, [[other.pk, MISSING_ID]])
    assert not MeterDecision.objects.filter(meter=other).exists()
    with pytest.raises(IntegrityError, match="never changes"), transaction.atomic():
        _sql("UPDATE meters_meterdecision SET meter_id = %s WHERE id = %s", [other.pk, decision.pk])
    # Marking a decision published (the update every decision gets) is free.
    with transaction.atomic():
        _sql("UPDATE meters_meterdecision SET published = true WHERE id = %s", [decision.pk])
    assert list(MeterDecision.objects.values_list("meter_id", "published")) == [(carlos.pk, True)]


@pytest.mark.django_db(transaction=True)
def test_a_meter_with_decisions_cannot_be_deleted():
    grid = grid_make("demo")
    carlos, spare = meter_make(grid, "carlos"), meter_make(grid, "spare")
    decision_publish(carlos, "disconnect", "test")
    with pytest.raises(IntegrityError, match="still referenced"), transaction.atomic():
        _sql("DELETE FROM meters_meter WHERE id = %s", [carlos.pk])
    # A meter no decision names can still be removed (a registration mistake).
    with transaction.atomic():
        _sql("DELETE FROM meters_meter WHERE id = %s", [spare.pk])
    assert MeterDecision.objects.filter(meter=carlos).count() == 1
