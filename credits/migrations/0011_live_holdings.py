"""Consumption reads live holdings only.

`Holding.live` (quantity > 0, a stored generated column) and the partial index holding_live
let `credits_take` skip the emptied holdings an old organization accumulates: every lot it
ever had leaves a holding at zero per account it passed through.

credits_take's current definition is credits/sql/credits_take.sql. This migration installs the
version it was written with, kept here, not the file: the file moves on with later migrations
(0012 reads holdings' copies of their lots' dates, columns that do not exist yet at this point),
and a fresh database must be built from what each migration did at its time."""

import importlib

from django.db import migrations, models

# credits_take as this migration installed it.
TAKE_SQL = r"""
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
    v_organization bigint;
    v_left integer;
    v_part integer;
    r record;
BEGIN
    lot_ids := '{}';
    quantities := '{}';
    SELECT held, organization_id INTO STRICT v_held, v_organization
    FROM credits_account WHERE id = p_account FOR UPDATE;
    SELECT COALESCE(SUM(h.quantity), 0) - (v_held - p_reserved) INTO available
    FROM credits_holding h JOIN credits_lot l ON l.id = h.lot_id
    WHERE h.account_id = p_account AND h.live
      AND l.expired_at IS NULL AND l.revoked_at IS NULL
      AND (l.expires_at IS NULL OR l.expires_at > p_now);
    taken := LEAST(p_quantity, GREATEST(available, 0));
    IF taken < p_quantity AND NOT p_allow_overage THEN
        RAISE EXCEPTION 'insufficient credits' USING ERRCODE = 'CR001',
            DETAIL = json_build_object(
                'available', GREATEST(available, 0), 'shortfall', p_quantity - taken)::text;
    END IF;
    v_left := taken;
    FOR r IN
        SELECT h.id, h.lot_id, h.quantity
        FROM credits_holding h JOIN credits_lot l ON l.id = h.lot_id
        WHERE h.account_id = p_account AND h.live
          AND l.expired_at IS NULL AND l.revoked_at IS NULL
          AND (l.expires_at IS NULL OR l.expires_at > p_now)
        ORDER BY l.expires_at ASC NULLS LAST, l.invoiced_at ASC, l.id ASC
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


def _previous_take() -> str:
    """credits_take as migration 0003 defined it, to go back to."""
    sql = importlib.import_module("credits.migrations.0003_credits_take").SQL
    start = sql.index("CREATE FUNCTION credits_take(")
    end = sql.index("-- A whole redemption in one statement")
    return sql[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


class Migration(migrations.Migration):
    dependencies = [("credits", "0010_overage_due")]

    operations = [
        migrations.AddField(
            model_name="holding",
            name="live",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.ExpressionWrapper(
                    models.Q(("quantity__gt", 0)), output_field=models.BooleanField()
                ),
                output_field=models.BooleanField(),
            ),
        ),
        migrations.AddIndex(
            model_name="holding",
            index=models.Index(
                condition=models.Q(("live", True)), fields=["account", "lot"], name="holding_live"
            ),
        ),
        migrations.RunSQL(TAKE_SQL, _previous_take()),
    ]
