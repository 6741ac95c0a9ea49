-- credits_holding_lot_dates: a new holding carries a copy of its lot's expiry and invoice
-- date, so that the partial index holding_live_order lists an account's live holdings in
-- consumption order and credits_take reads them from one index (credits_lot_dates_moved.sql
-- keeps the copies in step when a lot's dates change; `credits_audit` checks them).
--
-- First installed by credits/migrations/0012_holding_consumption_order.py; this file is the
-- current definition (see README.md here).
CREATE OR REPLACE FUNCTION credits_holding_lot_dates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT expires_at, invoiced_at INTO NEW.lot_expires_at, NEW.lot_invoiced_at
    FROM credits_lot WHERE id = NEW.lot_id;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER holding_lot_dates BEFORE INSERT ON credits_holding
    FOR EACH ROW EXECUTE FUNCTION credits_holding_lot_dates();
