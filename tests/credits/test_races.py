"""Concurrency on a real PostgreSQL: threads, each with its own connection, hit one
organization at once. Nothing may be overdrawn, charged twice, resolved twice or deadlock."""

from collections import Counter

import pytest

from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import Hold, LedgerTransaction
from credits.services import HoldNotActive, InsufficientCredits
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, redeem
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
