"""Consumption in order from one index, and available from the cached balance.

Each holding carries its lot's expiry and invoice date (copied by a trigger when the holding
is created, and again if the lot's dates change), so the partial index holding_live_order
lists an account's live holdings in consumption order: credits_take walks it from the start
and stops once the quantity is covered. Available comes from the account's balance, which
every ledger write keeps, less the live holdings of lots already past their expiry that the
hourly job has not marked: a redemption no longer sums the account's holdings.

credits_take's current definition is credits/sql/credits_take.sql (installed by 0014 and later
migrations). This migration keeps the version it installed, so that a fresh database goes
through the same steps as one migrated at the time."""

import importlib

from django.db import migrations, models

# credits_take as this migration installed it (credits/sql/credits_take.sql at the time).
TAKE_SQL = r"""-- credits_take: the critical section of every consumption (credits/services.py `_take`,
-- `credits_redeem_once`), run inside PostgreSQL so that a hot account stays locked only for
-- the server's own work and the commit. This file is its current definition; migrations
-- install it with CREATE OR REPLACE (credits/migrations/0011_live_holdings.py first).
--
-- It reads only the account's live holdings (`live`, a stored generated column, with the
-- partial index holding_live): an organization's emptied holdings, which grow with its
-- history, never enter the sum or the loop.
--
-- VOLATILE: under READ COMMITTED each statement inside takes a fresh snapshot, so the read
-- after the lock sees everything the previous lock holder committed.
--
-- Short without overage: RAISE with SQLSTATE CR001 and the figures as JSON in DETAIL; the
-- statement (and so everything it wrote) is undone, and services.py raises
-- InsufficientCredits from it.
CREATE OR REPLACE FUNCTION credits_take(
    p_transaction bigint,
    p_account bigint,
    p_quantity integer,
    p_now timestamptz,
    p_reserved integer,        -- held credits this take may use (a capture: its own hold)
    p_allow_overage boolean,
    p_release_held integer,    -- how much the account's held figure drops (a capture)
    OUT available integer,
    OUT taken integer,
    OUT lot_ids bigint[],
    OUT quantities integer[]
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_held integer;
    v_balance integer;
    v_stale integer;
    v_organization bigint;
    v_left integer;
    v_part integer;
    r record;
BEGIN
    lot_ids := '{}';
    quantities := '{}';
    SELECT held, balance, organization_id INTO STRICT v_held, v_balance, v_organization
    FROM credits_account WHERE id = p_account FOR UPDATE;
    SELECT COALESCE(SUM(h.quantity), 0) INTO v_stale
    FROM credits_holding h
    WHERE h.account_id = p_account AND h.live AND h.lot_expires_at <= p_now;
    available := v_balance - v_stale - (v_held - p_reserved);
    taken := LEAST(p_quantity, GREATEST(available, 0));
    IF taken < p_quantity AND NOT p_allow_overage THEN
        RAISE EXCEPTION 'insufficient credits' USING ERRCODE = 'CR001',
            DETAIL = json_build_object(
                'available', GREATEST(available, 0), 'shortfall', p_quantity - taken)::text;
    END IF;
    v_left := taken;
    -- Two ranges of the same index, each read in order from its start and left as soon as
    -- the quantity is covered: dated lots still valid (earliest expiry first), then lots
    -- that never expire. One condition with an OR would walk past every lot already due
    -- but not yet marked expired, on every call.
    FOR r IN
        SELECT h.id, h.lot_id, h.quantity
        FROM credits_holding h
        WHERE h.account_id = p_account AND h.live AND h.lot_expires_at > p_now
          AND NOT EXISTS (SELECT FROM credits_lot l WHERE l.id = h.lot_id
                          AND (l.revoked_at IS NOT NULL OR l.expired_at IS NOT NULL))
        ORDER BY h.lot_expires_at, h.lot_invoiced_at, h.lot_id
    LOOP
        EXIT WHEN v_left = 0;
        v_part := LEAST(v_left, r.quantity);
        UPDATE credits_holding SET quantity = quantity - v_part WHERE id = r.id;
        INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
        VALUES (p_transaction, p_account, r.lot_id, -v_part, p_now);
        lot_ids := lot_ids || r.lot_id;
        quantities := quantities || v_part;
        v_left := v_left - v_part;
    END LOOP;
    IF v_left > 0 THEN
        FOR r IN
            SELECT h.id, h.lot_id, h.quantity
            FROM credits_holding h
            WHERE h.account_id = p_account AND h.live AND h.lot_expires_at IS NULL
              AND NOT EXISTS (SELECT FROM credits_lot l WHERE l.id = h.lot_id
                              AND (l.revoked_at IS NOT NULL OR l.expired_at IS NOT NULL))
            ORDER BY h.lot_invoiced_at, h.lot_id
        LOOP
            EXIT WHEN v_left = 0;
            v_part := LEAST(v_left, r.quantity);
            UPDATE credits_holding SET quantity = quantity - v_part WHERE id = r.id;
            INSERT INTO credits_ledgerentry
                (transaction_id, account_id, lot_id, quantity, created_at)
            VALUES (p_transaction, p_account, r.lot_id, -v_part, p_now);
            lot_ids := lot_ids || r.lot_id;
            quantities := quantities || v_part;
            v_left := v_left - v_part;
        END LOOP;
    END IF;
    IF v_left > 0 THEN
        -- The cached balance promised more than the valid holdings hold: the ledger is out
        -- of step (the audit names how). Refuse rather than write entries that disagree.
        RAISE EXCEPTION 'account % holds less than its balance says', p_account
            USING ERRCODE = 'data_corrupted';
    END IF;
    UPDATE credits_account
    SET balance = balance - taken, held = held - p_release_held
    WHERE id = p_account;
    IF taken < p_quantity THEN
        INSERT INTO credits_overage
            (organization_id, account_id, transaction_id, quantity, invoice_reference, created_at)
        VALUES (v_organization, p_account, p_transaction, p_quantity - taken, '', p_now);
    END IF;
END;
$$;
"""

ORDER_SQL = """

CREATE FUNCTION credits_holding_lot_dates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT expires_at, invoiced_at INTO NEW.lot_expires_at, NEW.lot_invoiced_at
    FROM credits_lot WHERE id = NEW.lot_id;
    RETURN NEW;
END;
$$;
CREATE TRIGGER holding_lot_dates BEFORE INSERT ON credits_holding
    FOR EACH ROW EXECUTE FUNCTION credits_holding_lot_dates();

CREATE FUNCTION credits_lot_dates_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE credits_holding
    SET lot_expires_at = NEW.expires_at, lot_invoiced_at = NEW.invoiced_at
    WHERE lot_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER lot_dates_moved AFTER UPDATE OF expires_at, invoiced_at ON credits_lot
    FOR EACH ROW
    WHEN (OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.invoiced_at IS DISTINCT FROM NEW.invoiced_at)
    EXECUTE FUNCTION credits_lot_dates_moved();

-- After the triggers exist (and with the lots locked against date changes until this
-- migration commits), so that no change of a lot's dates falls between the copy and them.
LOCK TABLE credits_lot IN SHARE MODE;
UPDATE credits_holding h SET lot_expires_at = l.expires_at, lot_invoiced_at = l.invoiced_at
FROM credits_lot l WHERE l.id = h.lot_id;
"""

ORDER_REVERSE_SQL = """
DROP TRIGGER lot_dates_moved ON credits_lot;
DROP FUNCTION credits_lot_dates_moved();
DROP TRIGGER holding_lot_dates ON credits_holding;
DROP FUNCTION credits_holding_lot_dates();
"""

# credits_take as migration 0011 installed it, to go back to.
PREVIOUS_TAKE_SQL = importlib.import_module("credits.migrations.0011_live_holdings").TAKE_SQL


class Migration(migrations.Migration):
    dependencies = [("credits", "0011_live_holdings")]

    operations = [
        migrations.AddField(
            model_name="holding",
            name="lot_expires_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="holding",
            name="lot_invoiced_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.RunSQL(ORDER_SQL, ORDER_REVERSE_SQL),
        migrations.RemoveIndex(model_name="holding", name="holding_live"),
        migrations.AddIndex(
            model_name="holding",
            index=models.Index(
                condition=models.Q(("live", True)),
                fields=["account", "lot_expires_at", "lot_invoiced_at", "lot"],
                name="holding_live_order",
            ),
        ),
        migrations.RunSQL(TAKE_SQL, PREVIOUS_TAKE_SQL),
    ]
