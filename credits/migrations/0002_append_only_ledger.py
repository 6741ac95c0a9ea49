from django.db import migrations

# The ledger is append-only, enforced by PostgreSQL itself: a bug, a shell session or a
# support tool cannot rewrite history. TRUNCATE (used only to reset test databases) is not a
# row operation and stays possible.
SQL = """
CREATE FUNCTION credits_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the credit ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON credits_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_append_only();
CREATE TRIGGER ledger_transaction_append_only BEFORE UPDATE OR DELETE ON credits_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_append_only();
"""

REVERSE_SQL = """
DROP TRIGGER ledger_transaction_append_only ON credits_ledgertransaction;
DROP TRIGGER ledger_entry_append_only ON credits_ledgerentry;
DROP FUNCTION credits_ledger_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
