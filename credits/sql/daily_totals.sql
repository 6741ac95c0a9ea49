-- credits_daily_totals: after every INSERT statement on credits_ledgerentry, add the new
-- entries to credits_dailytotal, one row per (account, UTC day, transaction kind), gains and
-- losses apart. A statement trigger with a transition table: an expiry batch of thousands
-- of entries costs one grouped upsert, a redemption one row.
--
-- Rows are upserted in key order, so two statements touching the same rows wait for each
-- other instead of deadlocking. Writers already hold the accounts' locks (services), so a
-- redemption never waits here for anything but the account it locked itself.
CREATE OR REPLACE FUNCTION credits_daily_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credits_dailytotal AS d (organization_id, account_id, day, kind, gained, lost)
    SELECT a.organization_id, n.account_id, (n.created_at AT TIME ZONE 'UTC')::date, t.kind,
           COALESCE(SUM(n.quantity) FILTER (WHERE n.quantity > 0), 0),
           COALESCE(SUM(n.quantity) FILTER (WHERE n.quantity < 0), 0)
    FROM new_entries n
    JOIN credits_ledgertransaction t ON t.id = n.transaction_id
    JOIN credits_account a ON a.id = n.account_id
    GROUP BY a.organization_id, n.account_id, (n.created_at AT TIME ZONE 'UTC')::date, t.kind
    ORDER BY n.account_id, 3, t.kind
    ON CONFLICT (account_id, day, kind) DO UPDATE
        SET gained = d.gained + EXCLUDED.gained, lost = d.lost + EXCLUDED.lost;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER ledger_entry_daily_totals AFTER INSERT ON credits_ledgerentry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION credits_daily_totals();
