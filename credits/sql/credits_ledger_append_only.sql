-- credits_ledger_append_only: the ledger is append-only, enforced by PostgreSQL itself, so that
-- a bug, a shell session or a support tool cannot rewrite history. Each UPDATE or DELETE of a
-- ledger transaction or entry is refused with SQLSTATE restrict_violation. TRUNCATE (used only
-- to reset test databases) is not a row operation and stays possible.
--
-- First installed by credits/migrations/0002_append_only_ledger.py; this file is the current
-- definition (see README.md here).
CREATE OR REPLACE FUNCTION credits_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the credit ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE OR REPLACE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON credits_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_append_only();

CREATE OR REPLACE TRIGGER ledger_transaction_append_only
    BEFORE UPDATE OR DELETE ON credits_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_append_only();
