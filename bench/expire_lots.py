"""Expire 1,000,000 lots in one run of lots_expire (set-based, whatever the number)."""

import datetime as dt
import os
import time
import uuid

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organization
from credits import services

from .support import report

LOTS = int(os.environ.get("BENCH_EXPIRE_LOTS", "1000000"))

# Lots past their expiry, each held by the pool with its grant entry, as the services would
# have written them (the bench only needs them fast).
_SEED_SQL = """
WITH txn AS (
    INSERT INTO credits_ledgertransaction
        (organization_id, kind, idempotency_key, fingerprint, quantity, reference, memo,
         created_at)
    VALUES (%(org)s, 'grant', %(key)s, '', %(lots)s, 'bench', '', %(invoiced)s)
    RETURNING id
), lots AS (
    INSERT INTO credits_lot
        (organization_id, source, quantity, invoiced_at, expires_at, reference, created_at)
    SELECT %(org)s, 'grant', 1, %(invoiced)s, %(expires)s, '', %(invoiced)s
    FROM generate_series(1, %(lots)s)
    RETURNING id
), holdings AS (
    INSERT INTO credits_holding (account_id, lot_id, quantity)
    SELECT %(account)s, id, 1 FROM lots RETURNING lot_id
)
INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
SELECT (SELECT id FROM txn), %(account)s, lot_id, 1, %(invoiced)s FROM holdings
"""


def run() -> None:
    organization = Organization.objects.create(
        name="Bench expiry", slug=f"bench-expiry-{uuid.uuid4().hex[:10]}"
    )
    pool = services.pool_account(organization=organization)
    invoiced = timezone.now() - dt.timedelta(days=400)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _SEED_SQL,
            {
                "org": organization.pk,
                "key": f"bench-{uuid.uuid4()}",
                "lots": LOTS,
                "invoiced": invoiced,
                "expires": invoiced + dt.timedelta(days=365),
                "account": pool.pk,
            },
        )
        cursor.execute("UPDATE credits_account SET balance = %s WHERE id = %s", [LOTS, pool.pk])
    started = time.perf_counter()
    expired = services.lots_expire()
    seconds = time.perf_counter() - started
    report(bench="expire_lots", lots=expired, seconds=round(seconds, 2))
