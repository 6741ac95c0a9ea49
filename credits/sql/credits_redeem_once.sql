-- credits_redeem_once: a whole redemption in one statement (credits/services.py
-- `credits_redeem`): claim the idempotency key, then take (credits_take.sql). A replayed key
-- returns the first transaction, and whether its parameters differ, and takes nothing. One
-- statement is what keeps the hot path's account lock short: no client round trip happens
-- while it is held.
--
-- First installed by credits/migrations/0003_credits_take.py; this file is the current
-- definition (see README.md here).
CREATE OR REPLACE FUNCTION credits_redeem_once(
    p_organization bigint,
    p_key text,
    p_fingerprint text,
    p_account bigint,
    p_quantity integer,
    p_reference text,
    p_actor bigint,
    p_now timestamptz,
    p_allow_overage boolean,
    OUT transaction_id bigint,
    OUT replayed boolean,
    OUT conflict boolean
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_fingerprint text;
BEGIN
    replayed := false;
    conflict := false;
    INSERT INTO credits_ledgertransaction
        (organization_id, kind, idempotency_key, fingerprint, account_id, quantity, reference,
         memo, actor_id, created_at)
    VALUES (p_organization, 'redeem', p_key, p_fingerprint, p_account, p_quantity,
            p_reference, '', p_actor, p_now)
    ON CONFLICT (organization_id, idempotency_key) DO NOTHING
    RETURNING id INTO transaction_id;
    IF transaction_id IS NULL THEN
        SELECT id, fingerprint INTO STRICT transaction_id, v_fingerprint
        FROM credits_ledgertransaction
        WHERE organization_id = p_organization AND idempotency_key = p_key;
        replayed := true;
        conflict := v_fingerprint <> p_fingerprint;
        RETURN;
    END IF;
    PERFORM credits_take(transaction_id, p_account, p_quantity, p_now, 0, p_allow_overage, 0);
END;
$$;
