"""PostgreSQL guards the books even against code that bypasses the services.

* A deferred constraint trigger checks, at commit, that every transaction's
  entries sum to zero. It fires per entry but only the entry with the highest
  id of its transaction sums the transaction (an index lookup), so a
  100,000-entry settlement costs one sum, not 100,000.
* Entries and transactions are append-only: UPDATE and DELETE are refused.
"""

from django.db import migrations

FORWARD = r"""
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

CREATE FUNCTION ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused (post a correction instead)',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

CREATE TRIGGER ledger_transaction_append_only
    BEFORE UPDATE OR DELETE ON ledger_transaction
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_transaction_append_only ON ledger_transaction;
DROP TRIGGER IF EXISTS ledger_entry_append_only ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_append_only();
DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_transaction_balanced();
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
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
