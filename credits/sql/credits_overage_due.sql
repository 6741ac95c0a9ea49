-- credits_overage_due: keeps credits_overagedue, one row per organization with unbilled
-- overage and when the oldest was recorded, which the hourly overage job reads.
--
-- Overage rows are inserted by credits_take (SQL), so the row is kept in SQL too: whatever
-- inserts overage also marks its organization due, in the same transaction. `ON CONFLICT DO
-- UPDATE` (even when its WHERE is false) locks the organization's row until that transaction
-- commits, so the billing job's refresh, which locks the row first, always sees the overage a
-- concurrent transaction has just recorded, and a row the job deletes meanwhile is inserted
-- again.
--
-- First installed by credits/migrations/0010_overage_due.py; this file is the current
-- definition (see README.md here).
CREATE OR REPLACE FUNCTION credits_overage_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credits_overagedue (organization_id, since)
    VALUES (NEW.organization_id, NEW.created_at)
    ON CONFLICT (organization_id) DO UPDATE SET since = EXCLUDED.since
    WHERE credits_overagedue.since > EXCLUDED.since;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER overage_due AFTER INSERT ON credits_overage
    FOR EACH ROW EXECUTE FUNCTION credits_overage_due();
