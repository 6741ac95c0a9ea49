"""lots_expire in short batches, on a real PostgreSQL: a redemption in an organization under
expiry waits for the batch in progress, not for the run; a run that stops or dies keeps the
batches it committed and the next one carries on; two runs at once expire each lot once.
Orderings and counts are asserted here, never durations (those are the benchmarks')."""

import threading
import time

import pytest
from django.db import transaction
from django.db.models import Count

from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import LedgerEntry, Lot
from tests.credits.bulk import due_lots
from tests.credits.factories import grant, redeem
from tests.support.threads import run_threads

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 100


def assert_audit_clean():
    report = ledger_audit()
    assert report.ok, report.violations


def expired_count() -> int:
    return Lot.objects.filter(expired_at__isnull=False).count()


def assert_each_due_lot_expired_once(total: int) -> None:
    assert expired_count() == total
    per_lot = (
        LedgerEntry.objects.filter(transaction__kind="expire")
        .values("lot_id")
        .annotate(n=Count("id"))
    )
    assert len(per_lot) == total
    assert {row["n"] for row in per_lot} == {1}


def test_a_redemption_during_a_long_expiry_of_its_organization_waits_one_batch_at_most(
    organization,
):
    pool = services.pool_account(organization=organization)
    lots = 80 * BATCH
    due_lots(pool, lots)
    grant(organization, 100)  # what the redemptions take: valid for a year
    assert_audit_clean()
    expiry_done = threading.Event()
    seen: list[tuple[int, int]] = []  # lots expired (committed) just before and just after

    def expire(n: int):
        if n == 0:
            try:
                return services.lots_expire(batch_size=BATCH)
            finally:
                expiry_done.set()
        # Start once the first batch has committed, while the run is far from over.
        while expired_count() == 0 and not expiry_done.is_set():
            time.sleep(0.002)
        for i in range(5):
            with transaction.atomic():
                before = expired_count()
                redeem(pool, 1, idempotency_key=f"during-{i}")
                # Read while this transaction still holds the pool: no batch can commit
                # between the redemption and this count.
                seen.append((before, expired_count()))
        return None

    expired, _ = run_threads(2, expire)

    assert expired == lots
    assert seen[0][0] < lots, "the redemptions ran after the expiry, not during it"
    for before, after in seen:
        # The batch in progress when it asked, and at most one that took the lock first:
        # never the rest of the run (a run in one transaction would show 0 then all).
        assert after - before <= 2 * BATCH, seen
    assert selectors.account_balance(account=pool).total == 95
    assert_each_due_lot_expired_once(lots)
    assert_audit_clean()


class WorkerLost(Exception):
    """What a worker killed mid-batch looks like to the database: the batch's transaction
    never commits."""


def test_an_interrupted_expiry_keeps_its_batches_and_the_next_run_carries_on(
    organization, monkeypatch
):
    pool = services.pool_account(organization=organization)
    due_lots(pool, 10 * BATCH)
    grant(organization, 7)
    original = services._expire_batch
    calls = 0

    def dies_in_the_fourth_batch(**batch):
        nonlocal calls
        calls += 1
        if calls < 4:
            return original(**batch)
        with transaction.atomic():
            original(**batch)  # written, then lost with the transaction
            raise WorkerLost

    monkeypatch.setattr(services, "_expire_batch", dies_in_the_fourth_batch)
    with pytest.raises(WorkerLost):
        services.lots_expire(batch_size=BATCH)
    assert expired_count() == 3 * BATCH  # the committed batches stay
    assert_audit_clean()

    monkeypatch.setattr(services, "_expire_batch", original)
    assert services.lots_expire(batch_size=BATCH) == 7 * BATCH  # only what was left
    assert services.lots_expire(batch_size=BATCH) == 0
    assert selectors.account_balance(account=pool).total == 7
    assert_each_due_lot_expired_once(10 * BATCH)
    assert_audit_clean()


def test_a_run_past_its_deadline_stops_between_batches_and_the_next_finishes(organization):
    pool = services.pool_account(organization=organization)
    due_lots(pool, 5 * BATCH)
    # A deadline already passed: not even one batch.
    assert services.lots_expire(batch_size=BATCH, deadline=time.monotonic()) == 0
    assert expired_count() == 0
    assert services.lots_expire(batch_size=BATCH, deadline=time.monotonic() + 60) == 5 * BATCH
    assert_each_due_lot_expired_once(5 * BATCH)
    assert_audit_clean()


def test_two_runs_at_once_expire_every_lot_once(organization, other_organization):
    pools = [services.pool_account(organization=o) for o in (organization, other_organization)]
    for pool in pools:
        due_lots(pool, 6 * BATCH)

    counts = run_threads(2, lambda n: services.lots_expire(batch_size=BATCH))

    assert sum(counts) == 12 * BATCH
    assert_each_due_lot_expired_once(12 * BATCH)
    assert [selectors.account_balance(account=pool).total for pool in pools] == [0, 0]
    assert_audit_clean()
