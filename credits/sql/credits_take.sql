-- credits_take: the critical section of every consumption (credits/services.py `_take`,
-- credits_redeem_once.sql), run inside PostgreSQL so that a hot account stays locked only for
-- the server's own work and the commit. This file is its current definition (see README.md
-- here).
--
-- It never reads more of an account than the credits it takes. Available is the account's
-- cached balance (every ledger write keeps it) less the live holdings of lots already past
-- their expiry that the hourly job has not marked yet, less the holds. The lots come from the
-- partial index holding_live_order, which lists an account's live holdings in consumption
-- order (each holding carries its lot's dates: credits_holding_lot_dates.sql).
--
-- plan_cache_mode = force_generic_plan: each query here is planned once per session, for any
-- account, and never again with the call's values. Those values only mislead: the statistics
-- of holdings mix live and emptied rows, and emptied ones are past their lots' expiry too, so
-- a plan made for `lot_expires_at <= <now>` expected most of the table and read all of it (in
-- the first five calls of each session: every call, for a request with its own connection),
-- where the generic plan reads the index range of the few stale holdings.
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
) LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
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
    -- The consumption order (credits.rules.CONSUMPTION_ORDER: earliest expiry first, lots that
    -- never expire last, then oldest invoice, then lot id) as two ranges of the same index,
    -- each read in order from its start: dated lots still valid, then lots that never expire.
    -- One condition with an OR would walk past every lot already due but not yet marked
    -- expired, on every call.
    --
    -- LIMIT v_left: every row is a live holding (at least one credit), so no more rows than
    -- credits are needed. Without it PostgreSQL plans a loop's query for all its rows, and for
    -- an account with thousands of live holdings it read and sorted every one of them (and
    -- hashed the organization's lots for the check below) to take a single credit.
    --
    -- credits_lot_usable, inlined, checks each lot row by row as a last guard: a holding left
    -- live in a revoked or expired lot (the ledger out of step) is skipped, never spent.
    FOR r IN
        SELECT h.id, h.lot_id, h.quantity
        FROM credits_holding h
        WHERE h.account_id = p_account AND h.live AND h.lot_expires_at > p_now
          AND EXISTS (SELECT FROM credits_lot l WHERE l.id = h.lot_id
                      AND credits_lot_usable(l.expires_at, l.expired_at, l.revoked_at, p_now))
        ORDER BY h.lot_expires_at, h.lot_invoiced_at, h.lot_id
        LIMIT v_left
    LOOP
        EXIT WHEN v_left = 0;
        v_part := LEAST(v_left, r.quantity);
        UPDATE credits_holding SET quantity = quantity - v_part WHERE id = r.id;
        lot_ids := lot_ids || r.lot_id;
        quantities := quantities || v_part;
        v_left := v_left - v_part;
    END LOOP;
    IF v_left > 0 THEN
        FOR r IN
            SELECT h.id, h.lot_id, h.quantity
            FROM credits_holding h
            WHERE h.account_id = p_account AND h.live AND h.lot_expires_at IS NULL
              AND EXISTS (SELECT FROM credits_lot l WHERE l.id = h.lot_id
                          AND credits_lot_usable(l.expires_at, l.expired_at, l.revoked_at, p_now))
            ORDER BY h.lot_invoiced_at, h.lot_id
            LIMIT v_left
        LOOP
            EXIT WHEN v_left = 0;
            v_part := LEAST(v_left, r.quantity);
            UPDATE credits_holding SET quantity = quantity - v_part WHERE id = r.id;
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
    -- One entry per lot taken, in one statement: the entries' statement triggers (their
    -- references, the daily totals) run once per take, not once per lot.
    IF cardinality(lot_ids) > 0 THEN
        INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
        SELECT p_transaction, p_account, u.lot_id, -u.quantity, p_now
        FROM unnest(lot_ids, quantities) WITH ORDINALITY AS u(lot_id, quantity, n)
        ORDER BY u.n;
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
