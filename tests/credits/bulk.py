"""Thousands of due lots at once, for the expiry's tests: written in one statement as the
services would have written them (a lot, its holding and its grant entry each), because as
many lot_grant calls would take most of a minute."""

import datetime as dt
import uuid

from django.db import connection, transaction
from django.utils import timezone

# Lots of one credit, past their expiry, held by one account.
_DUE_LOTS_SQL = """
WITH txn AS (
    INSERT INTO credits_ledgertransaction
        (organization_id, kind, idempotency_key, fingerprint, quantity, reference, memo,
         created_at)
    VALUES (%(org)s, 'grant', %(key)s, '', %(lots)s, 'test', '', %(invoiced)s)
    RETURNING id
), lots AS (
    INSERT INTO credits_lot
        (organization_id, source, quantity, invoiced_at, expires_at, reference, created_at)
    SELECT %(org)s, 'grant', 1, %(invoiced)s, %(invoiced)s + interval '365 days', '',
           %(invoiced)s
    FROM generate_series(1, %(lots)s)
    RETURNING id
), holdings AS (
    INSERT INTO credits_holding (account_id, lot_id, quantity)
    SELECT %(account)s, id, 1 FROM lots RETURNING lot_id
), entries AS (
    INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
    SELECT (SELECT id FROM txn), %(account)s, lot_id, 1, %(invoiced)s FROM holdings
    RETURNING 1
)
UPDATE credits_account SET balance = balance + (SELECT COUNT(*) FROM entries)
WHERE id = %(account)s
"""


def due_lots(account, count: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _DUE_LOTS_SQL,
            {
                "org": account.organization_id,
                "account": account.pk,
                "key": f"due-{uuid.uuid4()}",
                "lots": count,
                "invoiced": timezone.now() - dt.timedelta(days=400),
            },
        )
