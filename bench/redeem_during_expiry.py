"""Latency of single redemptions in an organization while lots_expire runs over 1,000,000
due lots in another process: p50, p99 and the worst, in milliseconds.

The measured organization's pool holds one due lot in every thousand, spread over the whole
run in expiry order, so that nearly every batch of the expiry locks the very account the
redemptions take from: each redemption waits for at most the batch in progress. The other
lots belong to a second organization, as in `expire_lots`.
"""

import datetime as dt
import multiprocessing
import os
import threading
import time
import uuid

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import Organization
from credits import services
from credits.models import Account

from .support import report

LOTS = int(os.environ.get("BENCH_EXPIRE_LOTS", "1000000"))
THREADS = int(os.environ.get("BENCH_REDEEM_THREADS", "2"))
# One lot in this many belongs to the measured organization.
SPREAD = 1_000

# Lot n expires n milliseconds after the first, so the expiry takes them in this order; every
# SPREAD-th is the measured organization's. Each organization gets one grant transaction
# with an entry per lot, as the services would have written them.
_SEED_SQL = """
WITH txns AS (
    INSERT INTO credits_ledgertransaction
        (organization_id, kind, idempotency_key, fingerprint, quantity, reference, memo,
         created_at)
    VALUES (%(hot)s, 'grant', %(key)s || '-hot', '', %(lots)s / %(spread)s, 'bench', '',
            %(invoiced)s),
           (%(other)s, 'grant', %(key)s || '-other', '', %(lots)s - %(lots)s / %(spread)s,
            'bench', '', %(invoiced)s)
    RETURNING id, organization_id
), lots AS (
    INSERT INTO credits_lot
        (organization_id, source, quantity, invoiced_at, expires_at, reference, created_at)
    SELECT CASE WHEN n %% %(spread)s = 0 THEN %(hot)s ELSE %(other)s END, 'grant', 1,
           %(invoiced)s, %(expires)s + n * interval '1 millisecond', '', %(invoiced)s
    FROM generate_series(1, %(lots)s) AS n
    RETURNING id, organization_id
), holdings AS (
    INSERT INTO credits_holding (account_id, lot_id, quantity)
    SELECT CASE WHEN organization_id = %(hot)s THEN %(hot_pool)s ELSE %(other_pool)s END, id, 1
    FROM lots
    RETURNING account_id, lot_id
)
INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
SELECT txns.id, holdings.account_id, holdings.lot_id, 1, %(invoiced)s
FROM holdings JOIN credits_account a ON a.id = holdings.account_id
JOIN txns ON txns.organization_id = a.organization_id
"""


def _seed() -> Account:
    suffix = uuid.uuid4().hex[:10]
    hot = Organization.objects.create(name="Bench redeem under expiry", slug=f"bench-hot-{suffix}")
    other = Organization.objects.create(name="Bench expiry", slug=f"bench-other-{suffix}")
    hot_pool = services.pool_account(organization=hot)
    other_pool = services.pool_account(organization=other)
    invoiced = timezone.now() - dt.timedelta(days=400)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _SEED_SQL,
            {
                "hot": hot.pk,
                "other": other.pk,
                "hot_pool": hot_pool.pk,
                "other_pool": other_pool.pk,
                "key": f"bench-{suffix}",
                "lots": LOTS,
                "spread": SPREAD,
                "invoiced": invoiced,
                # All due: the last one a day before now.
                "expires": timezone.now() - dt.timedelta(days=1, milliseconds=LOTS),
            },
        )
        cursor.execute(
            "UPDATE credits_account a SET balance = s.total FROM (SELECT account_id, "
            "SUM(quantity) AS total FROM credits_holding GROUP BY account_id) s "
            "WHERE a.id = s.account_id AND a.id IN (%s, %s)",
            [hot_pool.pk, other_pool.pk],
        )
    # What the redemptions take: a lot that never expires, in the pool the expiry locks.
    services.lot_grant(
        organization=hot,
        quantity=10_000_000,
        source="grant",
        invoice_date=timezone.now(),
        reference="",
        idempotency_key=f"bench-hot-grant-{suffix}",
        expires_at=None,
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE credits_lot")
        cursor.execute("VACUUM ANALYZE credits_holding")
    return hot_pool


def _expire(started, finished) -> None:
    """The other process: one run of lots_expire, timed, on a connection of its own."""
    connections.close_all()
    started.set()
    begun = time.perf_counter()
    expired = services.lots_expire()
    finished.put((expired, time.perf_counter() - begun))
    connections.close_all()


def _redeem(account_id: int, worker: int, running, latencies: list[float]) -> None:
    account = Account.objects.get(pk=account_id)
    done = 0
    try:
        while running.is_set():
            begun = time.perf_counter()
            services.credits_redeem(
                account=account,
                quantity=1,
                reference="bench",
                idempotency_key=f"during-expiry-{worker}-{done}",
            )
            latencies.append(time.perf_counter() - begun)
            done += 1
    finally:
        connection.close()


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run() -> None:
    pool = _seed()
    connections.close_all()  # never share the parent's socket with the forked child
    context = multiprocessing.get_context("fork")
    started, finished = context.Event(), context.Queue()
    expiry = context.Process(target=_expire, args=(started, finished))
    expiry.start()
    started.wait()
    running = threading.Event()
    running.set()
    latencies: list[list[float]] = [[] for _ in range(THREADS)]
    threads = [
        threading.Thread(target=_redeem, args=(pool.pk, n, running, latencies[n]))
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    expired, seconds = finished.get()
    running.clear()
    for thread in threads:
        thread.join()
    expiry.join()
    ordered = sorted(latency for per_thread in latencies for latency in per_thread)
    report(
        bench="redeem_during_expiry",
        lots=expired,
        expiry_seconds=round(seconds, 2),
        batch_lots=settings.CREDITS_EXPIRY_BATCH_LOTS,
        threads=THREADS,
        redemptions=len(ordered),
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 1),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 1),
        max_ms=round(ordered[-1] * 1000, 1),
    )
