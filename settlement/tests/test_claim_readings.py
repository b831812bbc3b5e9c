"""The claim of readings in ``settlement_close``: one UPDATE ... RETURNING,
summed per meter when a late reading joins the meter's own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meters.models import Reading
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make
from settlement.services import settlement_close
from utility.ledger.selectors import account_balance, ledger_problems


def _due(interval_start):
    return interval_start + HOUR + timedelta(minutes=10)


@pytest.mark.django_db
def test_a_late_reading_adds_to_the_same_meters_reading_of_the_next_interval():
    grid = grid_make("claim")
    home = meter_make(grid, "home", "consumer")
    other = meter_make(grid, "other", "consumer")
    sun = meter_make(grid, "sun", "producer")
    reading_make(home, T0, import_wh=1_000)
    reading_make(sun, T0, export_wh=1_000)
    settlement_close(grid.pk, T0, _due(T0))
    # The neighbour's first hour arrives after it was settled, then both report hour two.
    late = reading_make(other, T0, import_wh=500, received_at=_due(T0) + timedelta(minutes=1))
    reading_make(other, T0 + HOUR, import_wh=250)
    reading_make(home, T0 + HOUR, import_wh=2_000)
    reading_make(sun, T0 + HOUR, export_wh=3_000)

    run = settlement_close(grid.pk, T0 + HOUR, _due(T0 + HOUR)).run

    assert late.late is True
    assert (run.meter_count, run.late_reading_count, run.import_wh) == (3, 1, 2_750)
    line = run.lines.get(meter=other)
    assert (line.import_wh, line.debit_uk) == (750, 750_000)
    assert account_balance(other.account_id) == -750_000
    assert Reading.objects.filter(settled_in__isnull=True).count() == 0
    assert ledger_problems() == []
