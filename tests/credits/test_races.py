"""Concurrency on a real PostgreSQL: threads, each with its own connection, hit one
organization at once. Nothing may be overdrawn, charged twice, resolved twice or deadlock."""

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.db import connection, transaction
from django.utils import timezone

from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import Hold, Holding, LedgerTransaction
from credits.services import HoldNotActive, InsufficientCredits
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, key, redeem
from tests.support.threads import run_threads

pytestmark = pytest.mark.django_db(transaction=True)


def assert_audit_clean():
    report = ledger_audit()
    assert report.ok, report.violations


def test_16_workers_1600_redemptions_on_1000_credits_exactly_1000_succeed(organization):
    grant(organization, 1000)
    pool = services.pool_account(organization=organization)

    def worker(n: int) -> Counter:
        outcome = Counter()
        for i in range(100):
            try:
                redeem(pool, 1, idempotency_key=f"race-{n}-{i}")
                outcome["ok"] += 1
            except InsufficientCredits:
                outcome["short"] += 1
        return outcome

    total = sum(run_threads(16, worker), Counter())
    assert total == Counter(ok=1000, short=600)
    assert selectors.account_balance(account=pool).total == 0
    assert_audit_clean()


def test_one_key_replayed_from_8_threads_is_one_transaction(organization):
    grant(organization, 10)
    pool = services.pool_account(organization=organization)
    results = run_threads(8, lambda n: redeem(pool, 3, idempotency_key="double-click").pk)
    assert len(set(results)) == 1
    assert LedgerTransaction.objects.filter(idempotency_key="double-click").count() == 1
    assert selectors.account_balance(account=pool).total == 7
    assert_audit_clean()


def test_concurrent_capture_and_release_of_one_hold_exactly_one_wins(organization):
    grant(organization, 10)
    pool = services.pool_account(organization=organization)
    placed = hold(pool, 4)

    def worker(n: int) -> str:
        try:
            if n % 2:
                services.hold_capture(hold=placed)
                return "captured"
            services.hold_release(hold=placed)
            return "released"
        except HoldNotActive:
            return "refused"

    outcomes = Counter(run_threads(8, worker))
    placed.refresh_from_db()
    # Replays of the winning call return its result; every call of the other kind is refused.
    winner = placed.status
    assert outcomes == Counter({winner: 4, "refused": 4})
    expected_total = 6 if winner == Hold.Status.CAPTURED else 10
    balance = selectors.account_balance(account=pool)
    assert (balance.total, balance.held) == (expected_total, 0)
    assert_audit_clean()


def test_allocations_redemptions_and_expiry_interleave_without_deadlock_or_loss(organization):
    course = services.course_account(organization=organization, course=CourseFactory())
    pool = services.pool_account(organization=organization)
    grant(organization, 500)
    grant(organization, 50, days_ago=400)  # already past its expiry: the job removes it

    def worker(n: int) -> int:
        done = 0
        for i in range(30):
            key = f"mix-{n}-{i}"
            try:
                if n == 0 and i % 10 == 0:
                    services.lots_expire()
                elif n % 3 == 0:
                    services.credits_transfer(
                        source=pool, destination=course, quantity=2, idempotency_key=key
                    )
                elif n % 3 == 1:
                    services.credits_transfer(
                        source=course, destination=pool, quantity=1, idempotency_key=key
                    )
                else:
                    redeem(course if i % 2 else pool, 1, idempotency_key=key)
                done += 1
            except InsufficientCredits:
                pass
        return done

    run_threads(8, worker)
    redeemed = -sum(
        LedgerTransaction.objects.filter(kind="redeem").values_list("entries__quantity", flat=True)
    )
    figures = selectors.organization_balance(organization=organization)
    # Pool and earmarked together: allocations move credits, only redemptions remove them.
    assert figures.total + figures.earmarked == 500 - redeemed
    assert_audit_clean()


def test_a_revocation_racing_two_transfers_of_its_lot_leaves_nothing_of_it_anywhere(
    organization, manager, monkeypatch
):
    """The revocation used to lock the lot's holders as it had read them: a transfer that
    committed in between carried part of the lot to an account it never locked, and a second
    transfer carried it on. The lot ended revoked with credits still in it, spendable."""
    pool = services.pool_account(organization=organization)
    course = CourseFactory()
    course_account = services.course_account(organization=organization, course=course)
    manager_account = services.manager_account(
        organization=organization, course=course, manager=manager
    )
    grant(organization, 20)  # the course's own credits, so that it never goes below zero
    services.credits_transfer(
        source=pool, destination=course_account, quantity=20, idempotency_key=key()
    )
    lot = grant(organization, 10, expires_at=timezone.now() + dt.timedelta(days=5))

    revocation_paused, resume = threading.Event(), threading.Event()
    second_open = threading.Event()
    lock = services._lock_accounts

    def pausing_lock(ids):
        if threading.current_thread().name == "revocation":
            revocation_paused.set()
            resume.wait(10)
        return lock(ids)

    monkeypatch.setattr(services, "_lock_accounts", pausing_lock)

    def revoke():
        try:
            services.lot_revoke(lot=lot, reason="refunded", idempotency_key=key("revoke"))
        finally:
            connection.close()

    def second_transfer():
        try:
            with transaction.atomic():
                services.credits_transfer(
                    source=course_account,
                    destination=manager_account,
                    quantity=3,
                    idempotency_key=key(),
                )
                second_open.set()
                time.sleep(1)  # still open when the revocation takes its locks
        finally:
            connection.close()

    revocation = threading.Thread(target=revoke, name="revocation")
    revocation.start()
    assert revocation_paused.wait(10)
    # Between the revocation's start and its locks: the lot moves to the course ...
    services.credits_transfer(
        source=pool, destination=course_account, quantity=10, idempotency_key=key()
    )
    onward = threading.Thread(target=second_transfer)
    onward.start()
    assert second_open.wait(10)  # ... and part of it on to the manager
    resume.set()
    revocation.join(30)
    onward.join(30)

    # Wherever the lot went, nothing of it is left to spend, and the ledger adds up.
    assert not Holding.objects.filter(lot=lot, quantity__gt=0).exists()
    report = ledger_audit()
    assert report.ok, report.violations
