"""credits_take reads no more of an account than what it takes, however many lots it holds.

An old organization's pool holds thousands of live lots. A redemption of one credit must walk
holding_live_order from its start and stop at the first lot, never read and sort them all
(what the plan for all of a loop's rows did), and never scan the holdings or lots tables. The
reads are counted by PostgreSQL itself (this transaction's statistics), with statistics
gathered first so the planner sees the tables as they are: the organization's pool beside
other organizations' (the holdings table is everyone's)."""

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from credits import services
from credits.models import LedgerEntry
from tests.accounts.factories import OrganizationFactory
from tests.credits.factories import hold, key

pytestmark = pytest.mark.django_db

LIVE_LOTS = 2000
STALE_LOTS = 20  # past their expiry, not yet marked by the hourly job
EMPTIED_LOTS = 4000  # expired and marked long ago: their holdings are at zero
NEIGHBOURS = 3  # other organizations, each with LIVE_LOTS of their own

# Lots of two credits each with their pool holdings, as the services would leave them (the
# holdings' copies of their lots' dates come from the trigger), and the pool's balance.
_LOTS_SQL = """
WITH lots AS (
    INSERT INTO credits_lot
        (organization_id, source, quantity, invoiced_at, expires_at, reference, expired_at,
         created_at)
    SELECT %(org)s, 'grant', 2, %(invoiced)s, %(first_expiry)s + n * interval '1 minute', '',
           %(expired_at)s, %(invoiced)s
    FROM generate_series(1, %(count)s) n
    RETURNING id
)
INSERT INTO credits_holding (account_id, lot_id, quantity)
SELECT %(account)s, id, %(quantity)s FROM lots
"""


def _neighbours():
    now = timezone.now()
    for _ in range(NEIGHBOURS):
        pool = services.pool_account(organization=OrganizationFactory())
        _lots(pool, LIVE_LOTS, first_expiry=now + dt.timedelta(days=1))


def _lots(pool, count, *, first_expiry, expired_at=None):
    quantity = 0 if expired_at else 2
    with connection.cursor() as cursor:
        cursor.execute(
            _LOTS_SQL,
            {
                "org": pool.organization_id,
                "account": pool.pk,
                "count": count,
                "invoiced": first_expiry - dt.timedelta(days=365),
                "first_expiry": first_expiry,
                "expired_at": expired_at,
                "quantity": quantity,
            },
        )
        cursor.execute(
            "UPDATE credits_account SET balance = balance + %s WHERE id = %s",
            [count * quantity, pool.pk],
        )


def _reads(cursor) -> dict[str, int]:
    cursor.execute(
        "SELECT pg_stat_get_xact_tuples_returned('holding_live_order'::regclass),"
        " pg_stat_get_xact_numscans('credits_holding'::regclass),"
        " pg_stat_get_xact_numscans('credits_lot'::regclass)"
    )
    index_rows, holding_scans, lot_scans = cursor.fetchone()
    return {"index_rows": index_rows, "holding_scans": holding_scans, "lot_scans": lot_scans}


@pytest.fixture
def old_pool(organization):
    now = timezone.now()
    pool = services.pool_account(organization=organization)
    _lots(pool, EMPTIED_LOTS, first_expiry=now - dt.timedelta(days=400), expired_at=now)
    _lots(pool, STALE_LOTS, first_expiry=now - dt.timedelta(days=1))
    _lots(pool, LIVE_LOTS, first_expiry=now + dt.timedelta(days=1))
    _neighbours()
    with connection.cursor() as cursor:
        # Inside the test's transaction: the statistics, and the plans they invalidate, are
        # undone with it.
        cursor.execute("ANALYZE credits_holding, credits_lot, credits_account")
    return pool


def _delta(before, after):
    return {name: after[name] - before[name] for name in before}


@pytest.mark.parametrize("quantity", [1, 5])
def test_a_redemption_reads_only_the_lots_it_takes(old_pool, quantity):
    with connection.cursor() as cursor:
        before = _reads(cursor)
        txn = services.credits_redeem(
            account=old_pool, quantity=quantity, reference="t", idempotency_key=key("r")
        )
        reads = _delta(before, _reads(cursor))
    taken = LedgerEntry.objects.filter(transaction_id=txn.pk).count()
    assert taken == (quantity + 1) // 2  # two credits per lot
    # At most one row per credit: the loop fetches in batches, up to its LIMIT.
    # The stale lots' holdings (for available) and the lots taken, nothing else.
    assert reads["index_rows"] <= STALE_LOTS + quantity
    assert reads["holding_scans"] == 0
    assert reads["lot_scans"] == 0


def test_a_capture_reads_only_the_lots_it_takes(old_pool):
    placed = hold(old_pool, 3)
    with connection.cursor() as cursor:
        before = _reads(cursor)
        services.hold_capture(hold=placed)
        reads = _delta(before, _reads(cursor))
    assert reads["index_rows"] <= STALE_LOTS + 3  # at most one row per credit held
    assert reads["holding_scans"] == 0
    assert reads["lot_scans"] == 0


def test_never_expiring_lots_are_reached_without_reading_the_dated_ones_twice(organization):
    # An account whose dated lots are all spent: the second range of the index serves it.
    organization.lot_validity_days = None
    organization.save(update_fields=["lot_validity_days"])
    pool = services.pool_account(organization=organization)
    now = timezone.now()
    _lots(pool, LIVE_LOTS, first_expiry=now - dt.timedelta(days=400), expired_at=now)
    _neighbours()
    services.lot_grant(
        organization=organization,
        quantity=5,
        source="grant",
        invoice_date=timezone.now(),
        reference="",
        idempotency_key=f"never-{uuid.uuid4()}",
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE credits_holding, credits_lot")
        before = _reads(cursor)
        services.credits_redeem(account=pool, quantity=2, reference="t", idempotency_key=key())
        reads = _delta(before, _reads(cursor))
    assert reads["index_rows"] <= 2
    assert reads["holding_scans"] == 0
    assert reads["lot_scans"] == 0
