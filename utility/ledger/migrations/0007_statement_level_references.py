"""Referential integrity of ledger entries checked once per statement.

Django's foreign keys are row-level ``DEFERRABLE INITIALLY DEFERRED``
constraints: every entry row queues two checks (its account, its ledger
transaction) that PostgreSQL runs one by one at commit, each a query of its
own. A settlement of 100,000 meters inserts 100,000 entries in one COPY, and
those 200,000 checks were the largest single cost of ``settlement_close``
(bench/settlement.py). PostgreSQL has no statement-level foreign keys, so the
same guarantee is built from statement-level triggers with transition tables:

* ``rows_reference_parent(column, parent)``: after every INSERT (or COPY) into
  a child table, one anti-join of the statement's new rows against the parent
  refuses the whole statement when any row names a parent id that does not
  exist (SQLSTATE 23503, ``foreign_key_violation``, as a foreign key would);
* ``key_immutable()``: a parent's ``id`` never changes (a row trigger on
  ``UPDATE OF id`` only, so the balance updates do not fire it);
* ledger accounts are permanent (``ledger_account_permanent``): an account
  referenced by entries could otherwise be deleted by a transaction that does
  not yet see the entries another is adding. Ledger transactions were already
  append-only (migration 0002).

What differs from the row-level keys: the check is immediate (at the end of
the statement, not at commit), so an entry can only be inserted after its
account and transaction exist, which is how the services always write; and a
TRUNCATE of a parent alone is not stopped (no application path truncates).
``ledger_check`` also looks for dangling entries. The embedded default
(SQLite, the demo) has no such triggers.
"""

import django.db.models.deletion
from django.db import migrations, models

FUNCTIONS = r"""
CREATE FUNCTION rows_reference_parent() RETURNS trigger AS $$
-- TG_ARGV[0]: the column of the new rows; TG_ARGV[1]: the parent table (key id).
DECLARE
    missing bigint;
BEGIN
    EXECUTE format(
        'SELECT k.id FROM (SELECT DISTINCT %1$I AS id FROM new_rows) k '
        'WHERE NOT EXISTS (SELECT 1 FROM %2$I p WHERE p.id = k.id) LIMIT 1',
        TG_ARGV[0], TG_ARGV[1]) INTO missing;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "%" violates its reference to "%": % = % does not exist',
            TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[0], missing USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION key_immutable() RETURNS trigger AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'the id of a row of "%" never changes (% to %)', TG_TABLE_NAME, OLD.id, NEW.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION parent_keep_referenced() RETURNS trigger AS $$
-- TG_ARGV[0]: the child table; TG_ARGV[1]: its column naming this table's id.
DECLARE
    referenced bigint;
BEGIN
    EXECUTE format(
        'SELECT o.id FROM old_rows o WHERE EXISTS (SELECT 1 FROM %1$I c WHERE c.%2$I = o.id) LIMIT 1',
        TG_ARGV[0], TG_ARGV[1]) INTO referenced;
    IF referenced IS NOT NULL THEN
        RAISE EXCEPTION 'delete on table "%" violates the reference from "%": id % is still referenced',
            TG_TABLE_NAME, TG_ARGV[0], referenced USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
"""

FORWARD = r"""
CREATE TRIGGER ledger_entry_account_exists
    AFTER INSERT ON ledger_entry REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rows_reference_parent('account_id', 'ledger_account');
CREATE TRIGGER ledger_entry_transaction_exists
    AFTER INSERT ON ledger_entry REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rows_reference_parent('transaction_id', 'ledger_transaction');

CREATE FUNCTION ledger_account_permanent() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger accounts are permanent: account % cannot be deleted', OLD.id
        USING ERRCODE = 'foreign_key_violation';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_account_permanent
    BEFORE DELETE ON ledger_account FOR EACH ROW EXECUTE FUNCTION ledger_account_permanent();
CREATE TRIGGER ledger_account_key_immutable
    BEFORE UPDATE OF id ON ledger_account FOR EACH ROW EXECUTE FUNCTION key_immutable();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_account_key_immutable ON ledger_account;
DROP TRIGGER IF EXISTS ledger_account_permanent ON ledger_account;
DROP FUNCTION IF EXISTS ledger_account_permanent();
DROP TRIGGER IF EXISTS ledger_entry_transaction_exists ON ledger_entry;
DROP TRIGGER IF EXISTS ledger_entry_account_exists ON ledger_entry;
DROP FUNCTION IF EXISTS parent_keep_referenced();
DROP FUNCTION IF EXISTS key_immutable();
DROP FUNCTION IF EXISTS rows_reference_parent();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(FUNCTIONS + FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0006_alter_entry_account_alter_entry_transaction")]

    operations = [
        migrations.AlterField(
            model_name="entry",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="ledger.account",
            ),
        ),
        migrations.AlterField(
            model_name="entry",
            name="transaction",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="ledger.transaction",
            ),
        ),
        # Triggers after the constraints are gone; dropped before they return.
        migrations.RunPython(forward, backward),
    ]
