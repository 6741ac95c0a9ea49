"""Redemptions per second on one hot organization, 8 worker processes, against PostgreSQL's
own pgbench TPC-B (scale 1, 8 clients) on the same server in the same run."""

import multiprocessing
import os
import re
import subprocess
import time
import uuid

from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from accounts.models import Organization
from credits import services
from credits.models import Account

from .support import database_params, ensure_database, pg_tool, report

WORKERS = 8
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
PGBENCH_DB = "credits_pgbench"


def _worker(args: tuple[int, int, float]) -> int:
    account_id, worker, stop_at = args
    connections.close_all()  # never share the parent's socket
    account = Account.objects.get(pk=account_id)
    done = 0
    while time.monotonic() < stop_at:
        services.credits_redeem(
            account=account, quantity=1, reference="bench", idempotency_key=f"w{worker}-{done}"
        )
        done += 1
    connections.close_all()
    return done


def _redemptions_per_second(account_id: int) -> float:
    connections.close_all()
    context = multiprocessing.get_context("fork")
    with context.Pool(WORKERS) as pool:
        # Every worker starts together once all have forked and connected.
        start = time.monotonic() + 2
        stop_at = start + SECONDS
        counts = pool.map(_worker, [(account_id, n, stop_at) for n in range(WORKERS)])
    return sum(counts) / (stop_at - start)


def _pgbench_tps() -> float:
    ensure_database(PGBENCH_DB)
    params = database_params(PGBENCH_DB)
    env = {**os.environ, "PGPASSWORD": params.get("password", "")}
    base = ["-h", params["host"], "-p", params["port"], "-U", params["user"]]
    pgbench = pg_tool("pgbench")
    subprocess.run(
        [pgbench, "-i", "-s", "1", "-q", *base, PGBENCH_DB],
        env=env,
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [
            pgbench,
            "-c",
            str(WORKERS),
            "-j",
            "2",
            "-T",
            str(int(SECONDS)),
            "-b",
            "tpcb-like",
            *base,
            PGBENCH_DB,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))


def run() -> None:
    """In an organization of its own, created for the run: one lot, no history."""
    organization = Organization.objects.create(
        name="Bench hot org", slug=f"bench-{uuid.uuid4().hex[:12]}", lot_validity_days=None
    )
    services.lot_grant(
        organization=organization,
        quantity=10_000_000,
        source="grant",
        invoice_date=organization.created_at,
        reference="",
        idempotency_key="bench-grant",
    )
    _measure(services.pool_account(organization=organization), bench="redeem_hot_org")


def run_big() -> None:
    """The same, in the big organization of bench/big_org.py: three years of lots and
    holdings behind the pool (and a fresh lot, so that no worker runs short)."""
    from . import big_org

    organization = big_org.organization("big")
    big_org.top_up(organization)
    _measure(services.pool_account(organization=organization), bench="redeem_hot_org_big")


def _measure(pool: Account, *, bench: str) -> None:
    # One redemption first: after its commit, billing's auto top-up reads which
    # organizations have it on, once per process every 30 s; the steady state is counted.
    services.credits_redeem(account=pool, quantity=1, reference="bench", idempotency_key="warm")
    with CaptureQueriesContext(connection) as captured:
        services.credits_redeem(
            account=pool, quantity=1, reference="bench", idempotency_key="bench-count"
        )
    statements = len(captured.captured_queries)
    redemptions = _redemptions_per_second(pool.pk)
    tps = _pgbench_tps()
    report(
        bench=bench,
        workers=WORKERS,
        redemptions_per_s=round(redemptions, 1),
        pgbench_tps=round(tps, 1),
        ratio=round(redemptions / tps, 2),
        statements_per_redemption=statements,
    )
