"""Unpublished decisions found without reading the whole table.

The beat retries every meter's latest unpublished decision each minute
(``decisions_send_pending_bulk``), and the table keeps every decision ever
sent: a typical hour of a 100,000-meter grid adds about 9,000, some 80 million
a year. Without an index that retry read them all each minute (18 ms at
100,000 rows, linear beyond). This partial index holds only the unpublished
ones: each decision is in it from its insert until it is marked published.

The price: marking a decision published now changes an indexed column, so
that update is no longer HOT (migration 0005's fillfactor still keeps the new
version on the same page). Measured with ``python -m bench.decisions
--scenarios all-cut``: about 0.2 s more for 90,000 decisions (5.1 to 5.3 s).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("meters", "0005_decision_meter_statement_level"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="meterdecision",
            index=models.Index(condition=models.Q(("published", False)), fields=["meter"], name="decision_unpublished"),
        ),
    ]
