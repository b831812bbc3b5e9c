"""The zero-sum check, queued once per statement instead of once per entry.

Migration 0002's deferred trigger fired for every entry row: a settlement of
100,000 meters queued 100,000 plpgsql calls at commit (about 2.4 s of CPU on
the benchmark machine, the largest single cost of ``settlement_close``).
PostgreSQL has no deferred statement-level triggers, so the check is split:

* ``ledger_entry_queue_check``: after every INSERT or COPY into
  ``ledger_entry`` (statement level, reading the statement's new rows), add
  one row per distinct ledger transaction to ``ledger_balance_check``;
* ``ledger_balance_check_due``: a deferred constraint trigger on that table
  which, at commit, sums the ledger transaction's entries, raises if they are
  not zero, and deletes its row (the table is empty outside a transaction, and
  unlogged because a row never outlives one).

The guarantee is unchanged: every database transaction that adds entries to a
ledger transaction, old or new, by the services, raw SQL, the ORM or COPY,
has that ledger transaction's full sum checked at its commit. A ``SET
CONSTRAINTS ... IMMEDIATE`` fires the pending checks early, exactly as it did
the per-row ones; entries added after it queue a new check. A savepoint rolled
back takes its entries, its queued rows and their events with it.
"""

from django.db import migrations

FORWARD = r"""
DROP TRIGGER ledger_entry_balanced ON ledger_entry;
DROP FUNCTION ledger_transaction_balanced();

CREATE UNLOGGED TABLE ledger_balance_check (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id bigint NOT NULL
);

CREATE FUNCTION ledger_entry_queue_check() RETURNS trigger AS $$
BEGIN
    INSERT INTO ledger_balance_check (transaction_id)
        SELECT DISTINCT transaction_id FROM new_entries;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entry_queue_check
    AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entry_queue_check();

CREATE FUNCTION ledger_balance_check_due() RETURNS trigger AS $$
DECLARE
    total numeric;
BEGIN
    SELECT COALESCE(sum(amount_uk), 0) INTO total FROM ledger_entry WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries sum to % uk',
            NEW.transaction_id, total USING ERRCODE = 'check_violation';
    END IF;
    DELETE FROM ledger_balance_check WHERE id = NEW.id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_balance_check_due
    AFTER INSERT ON ledger_balance_check
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_balance_check_due();
"""

# Back to migration 0002's per-entry trigger.
BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_balance_check_due ON ledger_balance_check;
DROP FUNCTION IF EXISTS ledger_balance_check_due();
DROP TRIGGER IF EXISTS ledger_entry_queue_check ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_entry_queue_check();
DROP TABLE IF EXISTS ledger_balance_check;

CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger AS $$
DECLARE
    last_id bigint;
    total numeric;
BEGIN
    SELECT max(id) INTO last_id FROM ledger_entry WHERE transaction_id = NEW.transaction_id;
    IF NEW.id IS DISTINCT FROM last_id THEN
        RETURN NULL;
    END IF;
    SELECT COALESCE(sum(amount_uk), 0) INTO total FROM ledger_entry WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries sum to % uk',
            NEW.transaction_id, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_entry_balanced
    AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();
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
    dependencies = [("ledger", "0002_zero_sum_trigger")]
    operations = [migrations.RunPython(forward, backward)]
