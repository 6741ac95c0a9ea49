"""credits_reverse: credits given back into the account and lots a redemption or capture took
them from, last taken first, never more than it took, nothing into lots that are gone."""

import datetime as dt
import itertools
from collections import Counter

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Organization
from credits import selectors, services, usage
from credits.audit import ledger_audit
from credits.filters import HistoryFilter
from credits.models import Account, Holding, LedgerTransaction, Lot
from credits.services import (
    IdempotencyConflict,
    InvalidOperation,
    ReversalFigures,
    ReversalTooLarge,
)
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, key, redeem
from tests.support.threads import run_threads

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


@pytest.fixture(autouse=True)
def _audit_after_each_test():
    yield
    report = ledger_audit()
    assert report.ok, report.violations


def reverse(original, quantity, **kwargs):
    return services.credits_reverse(
        original=original,
        quantity=quantity,
        reason=kwargs.pop("reason", "level change"),
        idempotency_key=kwargs.pop("idempotency_key", key("reverse")),
        **kwargs,
    )


def figures(reversal) -> ReversalFigures:
    return services.reversal_figures(reversal=reversal)


def held_in(account, lot) -> int:
    return Holding.objects.get(account=account, lot=lot).quantity


def test_credits_go_back_into_the_lots_they_came_from_latest_expiring_first(organization, pool):
    sooner = grant(organization, 10, days_ago=300)
    later = grant(organization, 10, days_ago=10)
    original = redeem(pool, 15)  # 10 of sooner, then 5 of later
    reversal = reverse(original, 7)

    assert dict(reversal.entries.values_list("lot_id", "quantity")) == {later.pk: 5, sooner.pk: 2}
    assert (held_in(pool, sooner), held_in(pool, later)) == (2, 10)
    assert (reversal.kind, reversal.reversal_of, reversal.account_id) == (
        "reverse",
        original,
        pool.pk,
    )
    assert figures(reversal) == ReversalFigures(requested=7, returned=7, lapsed=0, overage=0)
    # No new lot, and each lot keeps its own expiry.
    assert Lot.objects.count() == 2
    assert Lot.objects.get(pk=sooner.pk).expires_at == sooner.expires_at
    pool.refresh_from_db()
    assert pool.balance == selectors.account_balance(account=pool).total == 12


def test_a_reversal_never_gives_back_more_than_the_original_took(organization, pool):
    grant(organization, 10)
    original = redeem(pool, 5)
    reverse(original, 3)
    with pytest.raises(ReversalTooLarge) as refused:
        reverse(original, 3, idempotency_key="too-much")
    assert (refused.value.requested, refused.value.reversible) == (3, 2)
    # Refused: no row, so the key is free to retry with a quantity that fits.
    assert not LedgerTransaction.objects.filter(idempotency_key="too-much").exists()
    reverse(original, 2, idempotency_key="too-much")
    with pytest.raises(ReversalTooLarge):
        reverse(original, 1)
    assert selectors.account_balance(account=pool).total == 10
    assert sum(original.reversals.values_list("quantity", flat=True)) == 5


def test_each_lot_gets_back_at_most_what_the_original_took_from_it(organization, pool):
    first = grant(organization, 4, days_ago=200)
    second = grant(organization, 10, days_ago=100)
    original = redeem(pool, 6)  # 4 of first, 2 of second
    redeem(pool, 3)  # another redemption: 3 more of second, not the original's to give back
    for _ in range(6):
        reverse(original, 1)
    assert (held_in(pool, first), held_in(pool, second)) == (4, 10 - 2 - 3 + 2)
    assert selectors.account_balance(account=pool).total == 14 - 3


def test_replaying_a_reversal_returns_it_and_other_details_are_refused(organization, pool):
    grant(organization, 10)
    original = redeem(pool, 5)
    first = reverse(original, 2, idempotency_key="r-1")
    assert reverse(original, 2, idempotency_key="r-1").pk == first.pk
    with pytest.raises(IdempotencyConflict):
        reverse(original, 3, idempotency_key="r-1")
    assert selectors.account_balance(account=pool).total == 7


def test_only_a_redemption_or_a_capture_can_be_reversed_and_with_a_reason(organization, pool):
    lot = grant(organization, 10)
    granted = LedgerTransaction.objects.get(entries__lot=lot, kind="grant")
    with pytest.raises(InvalidOperation):
        reverse(granted, 1)
    original = redeem(pool, 2)
    with pytest.raises(InvalidOperation):
        reverse(original, 1, reason="  ")
    with pytest.raises(InvalidOperation):
        reverse(original, 0)
    first = reverse(original, 1)
    with pytest.raises(InvalidOperation):
        reverse(first, 1)  # a reversal is not reversed in turn
    assert selectors.account_balance(account=pool).total == 9


def test_an_expired_lot_gets_nothing_back_and_the_figures_say_so(organization, pool):
    now = timezone.now()
    short_lived = grant(organization, 10, expires_at=now + dt.timedelta(days=10))
    original = redeem(pool, 5)
    with time_machine.travel(now + dt.timedelta(days=11)):
        services.lots_expire()
        reversal = reverse(original, 3)
    assert figures(reversal) == ReversalFigures(requested=3, returned=0, lapsed=3, overage=0)
    assert held_in(pool, short_lived) == 0
    assert selectors.account_balance(account=pool).total == 0
    # What lapsed counts as reversed: only 2 of the 5 are left to reverse.
    with pytest.raises(ReversalTooLarge) as refused:
        reverse(original, 3)
    assert refused.value.reversible == 2
    # The history shows a reversal that changed nothing.
    row = selectors.ledger_history(organization=organization).get(pk=reversal.pk)
    assert (row.get_kind_display(), row.quantity, row.net) == ("Reversed", 3, 0)


def test_a_lot_past_its_expiry_gets_nothing_back_before_the_expiry_job_ran(organization, pool):
    now = timezone.now()
    grant(organization, 10, expires_at=now + dt.timedelta(days=10))
    original = redeem(pool, 5)
    with time_machine.travel(now + dt.timedelta(days=10, seconds=1)):
        reversal = reverse(original, 5)
        assert figures(reversal).lapsed == 5
        assert services.lots_expire() == 1
    assert selectors.account_balance(account=pool).total == 0


def test_a_revoked_lot_gets_nothing_back_and_the_next_lot_still_gets_its_share(organization, pool):
    valid = grant(organization, 5, days_ago=300)
    refunded = grant(organization, 5, days_ago=10)
    original = redeem(pool, 8)  # 5 of valid, then 3 of refunded
    services.lot_revoke(lot=refunded, reason="Stripe refund", idempotency_key="refund-1")
    first = reverse(original, 2)  # refunded was taken last: its credits are gone with it
    assert figures(first) == ReversalFigures(requested=2, returned=0, lapsed=2, overage=0)
    second = reverse(original, 4)  # 1 more of refunded lapses, then valid gets 3 back
    assert figures(second) == ReversalFigures(requested=4, returned=3, lapsed=1, overage=0)
    third = reverse(original, 2)
    assert figures(third) == ReversalFigures(requested=2, returned=2, lapsed=0, overage=0)
    assert (held_in(pool, valid), held_in(pool, refunded)) == (5, 0)
    with pytest.raises(ReversalTooLarge):
        reverse(original, 1)


def test_overage_was_taken_last_so_it_is_reversed_first_and_gives_no_credits(organization, pool):
    lot = grant(organization, 4)
    original = redeem(pool, 10, allow_overage=True)  # 4 from the lot, 6 billed as overage
    reversal = reverse(original, 8)
    assert figures(reversal) == ReversalFigures(requested=8, returned=2, lapsed=0, overage=6)
    assert held_in(pool, lot) == 2
    assert figures(reverse(original, 2)).returned == 2
    assert selectors.account_balance(account=pool).total == 4


def test_a_capture_is_reversed_into_the_holds_account_and_holds_stay_as_they_are(organization):
    course = services.course_account(organization=organization, course=CourseFactory())
    pool = services.pool_account(organization=organization)
    lot = grant(organization, 10)
    services.credits_transfer(source=pool, destination=course, quantity=6, idempotency_key="t")
    started, waiting = hold(course, 4), hold(course, 1)
    capture = services.hold_capture(hold=started)
    reversal = reverse(capture, 3)
    assert reversal.account_id == course.pk
    assert (held_in(course, lot), held_in(pool, lot)) == (5, 4)
    balance = selectors.account_balance(account=course)
    assert (balance.total, balance.held) == (5, waiting.quantity)


def test_reversals_count_as_giving_use_back_in_the_figures(organization, pool):
    grant(organization, 10)
    original = redeem(pool, 6)
    reverse(original, 2)
    assert services.pool_account(organization=organization).pk == pool.pk
    figures_now = selectors.account_figures(accounts=[pool])[pool.pk]
    assert figures_now.used == 4
    assert usage.monthly_flows(organization=organization, months=1)[-1].used == 4
    assert ("reverse", "Reversed") in HistoryFilter().filters["kind"].extra["choices"]


# --- Concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_8_concurrent_reversals_of_one_redemption_never_give_back_more_than_it_took(
    organization,
):
    grant(organization, 10)
    pool = services.pool_account(organization=organization)
    original = redeem(pool, 5)

    def worker(n: int) -> str:
        try:
            reverse(original, 1, idempotency_key=f"race-{n}")
            return "reversed"
        except ReversalTooLarge:
            return "refused"

    assert Counter(run_threads(8, worker)) == Counter(reversed=5, refused=3)
    assert selectors.account_balance(account=pool).total == 10


# --- The audit catches what the API refuses --------------------------------------------------


def test_the_audit_flags_a_reversal_that_gives_back_more_than_its_original_took(organization, pool):
    lot = grant(organization, 10)
    original = redeem(pool, 2)
    # Forged past the API, in a savepoint rolled back after the audit: a reversal of 3
    # credits for a redemption of 2.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO credits_ledgertransaction (organization_id, kind, idempotency_key,"
            " fingerprint, account_id, quantity, reference, memo, created_at, reversal_of_id)"
            " VALUES (%s, 'reverse', 'forged', '', %s, 3, '', '', now(), %s) RETURNING id",
            [organization.pk, pool.pk, original.pk],
        )
        (forged,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity,"
            " created_at) VALUES (%s, %s, %s, 3, now())",
            [forged, pool.pk, lot.pk],
        )
        cursor.execute(
            "UPDATE credits_holding SET quantity = quantity + 3 WHERE account_id = %s",
            [pool.pk],
        )
        cursor.execute("UPDATE credits_account SET balance = balance + 3 WHERE id = %s", [pool.pk])
        violations = ledger_audit().violations
        transaction.set_rollback(True)
    assert any(
        v.startswith("reversals give back more than their original took") for v in violations
    )
    # The rest of the books balance: only the reversal checks see it.
    assert all("reversal" in v for v in violations)


# --- Against a model, at random ----------------------------------------------------------------

_orgs = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    lots=st.lists(
        st.tuples(st.integers(1, 12), st.integers(1, 60), st.booleans()), min_size=1, max_size=4
    ),
    asked=st.integers(1, 40),
    steps=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 20)), min_size=1, max_size=8),
)
def test_reversals_match_a_model_of_last_taken_first(lots, asked, steps):
    """Random lots (some revoked after the redemption), one redemption with overage, then
    reversals between which the clock moves on and lots expire: every reversal gives back,
    lot by lot, exactly what a plain model of "last taken first" says."""
    start = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    # Each example in a savepoint of its own, rolled back: the next starts from a clean ledger.
    with transaction.atomic(), time_machine.travel(start, tick=False) as clock:
        n = next(_orgs)
        org = Organization.objects.create(name=f"Reversal {n}", slug=f"reversal-{n}")
        pool = services.pool_account(organization=org)
        made = [
            (grant(org, quantity, expires_at=start + dt.timedelta(days=days)), revoke)
            for quantity, days, revoke in lots
        ]
        original = redeem(pool, asked, allow_overage=True)
        # The model: each lot's credits in the pool, and what the redemption took from it,
        # earliest-expiring first; the rest was overage.
        held = {lot.pk: lot.quantity for lot, _ in made}
        took, left = [], asked
        for lot, _ in sorted(made, key=lambda pair: (pair[0].expires_at, pair[0].pk)):
            part = min(left, lot.quantity)
            if part:
                took.append([lot, part])
                held[lot.pk] -= part
                left -= part
        overage = left
        revoked = set()
        for lot, revoke in made:
            if revoke:
                services.lot_revoke(lot=lot, reason="refund", idempotency_key=key("revoke"))
                revoked.add(lot.pk)
                held[lot.pk] = 0
        for quantity, days in steps:
            clock.shift(dt.timedelta(days=days))
            services.lots_expire()
            now = timezone.now()
            gone = revoked | {lot.pk for lot, _ in made if lot.expires_at <= now}
            for pk in gone:
                held[pk] = 0
            if quantity > overage + sum(part for _, part in took):
                with pytest.raises(ReversalTooLarge):
                    reverse(original, quantity)
                continue
            from_overage = min(quantity, overage)
            overage -= from_overage
            need, returned, lapsed = quantity - from_overage, 0, 0
            for entry in reversed(took):  # last taken first
                lot, part = entry
                give = min(need, part)
                entry[1] -= give
                need -= give
                if lot.pk in gone:
                    lapsed += give
                else:
                    returned += give
                    held[lot.pk] += give
            assert figures(reverse(original, quantity)) == ReversalFigures(
                quantity, returned, lapsed, from_overage
            )
            actual = dict(Holding.objects.filter(account=pool).values_list("lot_id", "quantity"))
            assert actual == held
            assert Account.objects.get(pk=pool.pk).balance == sum(held.values())
            report = ledger_audit()
            assert report.ok, report.violations
        transaction.set_rollback(True)
