-- credits_lot_dates_moved: when a lot's expiry or invoice date changes (support, a data fix),
-- every holding of it gets the new copy (credits_holding_lot_dates.sql made the first one), so
-- the consumption order credits_take reads from holding_live_order stays the lots' own.
--
-- First installed by credits/migrations/0012_holding_consumption_order.py; this file is the
-- current definition (see README.md here).
CREATE OR REPLACE FUNCTION credits_lot_dates_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE credits_holding
    SET lot_expires_at = NEW.expires_at, lot_invoiced_at = NEW.invoiced_at
    WHERE lot_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER lot_dates_moved AFTER UPDATE OF expires_at, invoiced_at ON credits_lot
    FOR EACH ROW
    WHEN (OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.invoiced_at IS DISTINCT FROM NEW.invoiced_at)
    EXECUTE FUNCTION credits_lot_dates_moved();
