-- credits_entry_references: the ledger entries' references (transaction, account, lot), checked
-- once per INSERT statement over the rows it inserted (a transition table), instead of
-- PostgreSQL's row-by-row foreign keys: expiring a million lots writes a million entries, and
-- checking each one's keys alone was a third of that run. Nothing checks them again later,
-- which is why the rows referred to may never be deleted (credits_never_deleted.sql).
--
-- First installed by credits/migrations/0007_ledger_at_scale.py; this file is the current
-- definition (see README.md here).
CREATE OR REPLACE FUNCTION credits_entry_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    SELECT format('transaction %s', n.transaction_id) INTO missing
    FROM (SELECT DISTINCT transaction_id FROM new_entries) n
    WHERE NOT EXISTS (SELECT FROM credits_ledgertransaction t WHERE t.id = n.transaction_id)
    LIMIT 1;
    IF missing IS NULL THEN
        SELECT format('account %s', n.account_id) INTO missing
        FROM (SELECT DISTINCT account_id FROM new_entries) n
        WHERE NOT EXISTS (SELECT FROM credits_account a WHERE a.id = n.account_id)
        LIMIT 1;
    END IF;
    IF missing IS NULL THEN
        SELECT format('lot %s', n.lot_id) INTO missing
        FROM new_entries n
        WHERE NOT EXISTS (SELECT FROM credits_lot l WHERE l.id = n.lot_id)
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'a ledger entry refers to a missing %', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER ledger_entry_references AFTER INSERT ON credits_ledgerentry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION credits_entry_references();
