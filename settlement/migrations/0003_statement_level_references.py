"""Referential integrity of settlement lines checked once per statement.

As ledger migration 0007 does for entries (and with its functions): a
settlement writes one line per meter in one COPY, and Django's row-level
deferred foreign keys ran two check queries per line at commit. Instead:
after every INSERT or UPDATE of lines, one anti-join per parent refuses a
statement naming a run or meter that does not exist (SQLSTATE 23503); a run
or meter still named by a line cannot be deleted, and their ids never change.

A run is locked by the settlement that writes its lines, so a concurrent
delete waits and then sees them; a meter with lines always has readings,
which keep their ordinary foreign key to it.
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = r"""
CREATE TRIGGER line_run_exists_insert
    AFTER INSERT ON settlement_settlementline REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rows_reference_parent('run_id', 'settlement_settlementrun');
CREATE TRIGGER line_meter_exists_insert
    AFTER INSERT ON settlement_settlementline REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rows_reference_parent('meter_id', 'meters_meter');
CREATE TRIGGER line_run_exists_update
    AFTER UPDATE ON settlement_settlementline REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rows_reference_parent('run_id', 'settlement_settlementrun');
CREATE TRIGGER line_meter_exists_update
    AFTER UPDATE ON settlement_settlementline REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rows_reference_parent('meter_id', 'meters_meter');

CREATE TRIGGER run_keep_lines
    AFTER DELETE ON settlement_settlementrun REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION parent_keep_referenced('settlement_settlementline', 'run_id');
CREATE TRIGGER meter_keep_lines
    AFTER DELETE ON meters_meter REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION parent_keep_referenced('settlement_settlementline', 'meter_id');
CREATE TRIGGER run_key_immutable
    BEFORE UPDATE OF id ON settlement_settlementrun FOR EACH ROW EXECUTE FUNCTION key_immutable();
CREATE TRIGGER meter_key_immutable
    BEFORE UPDATE OF id ON meters_meter FOR EACH ROW EXECUTE FUNCTION key_immutable();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS meter_key_immutable ON meters_meter;
DROP TRIGGER IF EXISTS run_key_immutable ON settlement_settlementrun;
DROP TRIGGER IF EXISTS meter_keep_lines ON meters_meter;
DROP TRIGGER IF EXISTS run_keep_lines ON settlement_settlementrun;
DROP TRIGGER IF EXISTS line_meter_exists_update ON settlement_settlementline;
DROP TRIGGER IF EXISTS line_run_exists_update ON settlement_settlementline;
DROP TRIGGER IF EXISTS line_meter_exists_insert ON settlement_settlementline;
DROP TRIGGER IF EXISTS line_run_exists_insert ON settlement_settlementline;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0007_statement_level_references"),
        ("meters", "0003_remove_reading_reading_meter_recent_and_more"),
        ("settlement", "0002_alter_settlementline_meter_alter_settlementline_run"),
    ]

    operations = [
        migrations.AlterField(
            model_name="settlementline",
            name="meter",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="settlement_lines",
                to="meters.meter",
            ),
        ),
        migrations.AlterField(
            model_name="settlementline",
            name="run",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lines",
                to="settlement.settlementrun",
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
