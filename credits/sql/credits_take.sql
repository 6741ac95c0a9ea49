-- credits_take: the critical section of every consumption (credits/services.py `_take`,
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
