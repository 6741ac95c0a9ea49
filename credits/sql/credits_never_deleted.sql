-- credits_never_deleted: lots and accounts are never deleted. Ledger entries refer to them
-- without foreign keys (credits_entry_references.sql checks the references once, on insert),
-- so a deleted lot or account would leave entries pointing at nothing.
--
-- First installed by credits/migrations/0007_ledger_at_scale.py; this file is the current
-- definition (see README.md here).
CREATE OR REPLACE FUNCTION credits_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the credit ledger refers to %: DELETE refused', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE OR REPLACE TRIGGER lot_never_deleted BEFORE DELETE ON credits_lot
    FOR EACH ROW EXECUTE FUNCTION credits_never_deleted();

CREATE OR REPLACE TRIGGER account_never_deleted BEFORE DELETE ON credits_account
    FOR EACH ROW EXECUTE FUNCTION credits_never_deleted();
