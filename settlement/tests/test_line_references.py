"""Settlement lines always name a run and a meter that exist.

Their foreign keys are checked per statement by PostgreSQL triggers
(settlement migration 0003) instead of per row at commit. Raw SQL goes around
the ORM here to show the database itself refuses a dangling line.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make
from settlement.models import SettlementLine, SettlementRun
from settlement.services import settlement_close

MISSING_ID = 987_654_321


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.fail("the reference triggers live in PostgreSQL: run with DATABASE_URL=postgres://...")


def _settled():
    grid = grid_make("demo")
    carlos = meter_make(grid, "carlos", "consumer")
    angel = meter_make(grid, "angel", "producer")
    reading_make(carlos, T0, import_wh=3_000)
    reading_make(angel, T0, export_wh=4_000)
    settlement_close(grid.pk, T0, T0 + HOUR + timedelta(minutes=10))
    return grid, carlos, angel, SettlementRun.objects.get()


def _sql(statement: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


INSERT_LINE = (
    "INSERT INTO settlement_settlementline (run_id, meter_id, import_wh, export_wh, debit_uk, credit_uk) "
    "VALUES (%s, %s, 0, 0, 0, 0)"
)


@pytest.mark.django_db(transaction=True)
def test_a_line_naming_a_missing_meter_or_run_is_refused():
    grid, carlos, _angel, run = _settled()
    extra = meter_make(grid, "extra", "consumer")
    no_meter = rf'"meters_meter": meter_id = {MISSING_ID} does not exist'
    with pytest.raises(IntegrityError, match=no_meter), transaction.atomic():
        _sql(INSERT_LINE, [run.pk, MISSING_ID])
    no_run = rf'"settlement_settlementrun": run_id = {MISSING_ID} does not exist'
    with pytest.raises(IntegrityError, match=no_run), transaction.atomic():
        _sql(INSERT_LINE, [MISSING_ID, extra.pk])
    with pytest.raises(IntegrityError, match=no_meter), transaction.atomic():
        _sql("UPDATE settlement_settlementline SET meter_id = %s WHERE meter_id = %s", [MISSING_ID, carlos.pk])
    # A line for a meter and run that exist goes in.
    with transaction.atomic():
        _sql(INSERT_LINE, [run.pk, extra.pk])
    assert SettlementLine.objects.filter(run=run).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_run_or_meter_with_lines_cannot_be_deleted_or_renumbered():
    grid, carlos, angel, run = _settled()
    with pytest.raises(IntegrityError, match="still referenced"), transaction.atomic():
        _sql("DELETE FROM settlement_settlementrun WHERE id = %s", [run.pk])
    with pytest.raises(IntegrityError, match="still referenced"), transaction.atomic():
        _sql("DELETE FROM meters_meter WHERE id = %s", [angel.pk])
    for table, pk in (("settlement_settlementrun", run.pk), ("meters_meter", carlos.pk)):
        with pytest.raises(IntegrityError, match="never changes"), transaction.atomic():
            _sql(f"UPDATE {table} SET id = %s WHERE id = %s", [MISSING_ID, pk])
    # A meter no line names can still be removed (a registration mistake).
    spare = meter_make(grid, "spare", "consumer")
    with transaction.atomic():
        _sql("DELETE FROM meters_meter WHERE id = %s", [spare.pk])
    assert SettlementRun.objects.filter(pk=run.pk).exists()
    assert SettlementLine.objects.filter(run=run).count() == 2
