-- credits_lot_usable: whether a lot's credits can be used at an instant, the one rule behind
-- "valid credits" in the ledger's SQL: neither marked expired nor revoked, and its expiry, if
-- it has one, still ahead. `credits.rules.lot_usable` is the same rule for the ORM;
-- tests/credits/test_rules.py proves the two answer alike.
--
-- LANGUAGE sql, one expression, IMMUTABLE and not STRICT: PostgreSQL inlines it into each
-- query that calls it, so a caller pays no function call per row and the planner still sees
-- plain conditions (an index condition, or a partial index predicate such as lot_expiry_due's
-- `expired_at IS NULL`). Making it plpgsql, STRICT, or STABLE/VOLATILE would stop that; a test
-- checks it stays inlined. IMMUTABLE holds because the instant is an argument: it never reads
-- the clock (the ledger's times come from the application) or a table.
CREATE OR REPLACE FUNCTION credits_lot_usable(
    p_expires_at timestamptz,
    p_expired_at timestamptz,
    p_revoked_at timestamptz,
    p_at timestamptz
) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_expired_at IS NULL AND p_revoked_at IS NULL
       AND (p_expires_at IS NULL OR p_expires_at > p_at)
$$;
