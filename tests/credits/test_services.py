import datetime as dt

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import Hold, LedgerEntry, LedgerTransaction, Lot, Overage
from credits.services import (
    HoldNotActive,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidOperation,
)
from tests.accounts.factories import UserFactory
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, redeem

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


@pytest.fixture(autouse=True)
def _audit_after_each_test():
    yield
    report = ledger_audit()
    assert report.ok, report.violations


def test_a_purchase_is_a_lot_valid_365_days_from_its_invoice_date(organization, pool):
    invoiced = dt.datetime(2026, 3, 1, 15, 0, tzinfo=dt.UTC)
    lot = services.lot_grant(
        organization=organization,
        quantity=100,
        source="purchase",
        invoice_date=invoiced,
        reference="in_123",
        idempotency_key="stripe:cs_1",
    )
    # Usable through the end of Mar 1, 2027 in the organization's zone (New York): the
    # 365th local day after the invoice date (docs/credit-model.md, Lots).
    assert lot.expires_at == dt.datetime(2027, 3, 2, 5, 0, tzinfo=dt.UTC)
    assert selectors.account_balance(account=pool, now=invoiced).total == 100


def test_an_organization_may_have_lots_that_never_expire(organization, pool):
    organization.lot_validity_days = None
    organization.save()
    assert grant(organization, 5).expires_at is None


def test_redemption_takes_the_earliest_expiring_lot_first(organization, pool):
    grant(organization, 10, days_ago=5)
    later = grant(organization, 10, days_ago=10)
    sooner = grant(organization, 10, days_ago=300)
    txn = redeem(pool, 15)
    taken = dict(txn.entries.values_list("lot_id", "quantity"))
    assert taken == {sooner.pk: -10, later.pk: -5}
    assert selectors.account_balance(account=pool).total == 15
    assert Lot.objects.count() == 3


def test_never_expiring_lots_are_consumed_last(organization, pool):
    organization.lot_validity_days = None
    organization.save()
    forever = grant(organization, 10)
    organization.lot_validity_days = 365
    organization.save()
    dated = grant(organization, 10)
    txn = redeem(pool, 12)
    assert dict(txn.entries.values_list("lot_id", "quantity")) == {dated.pk: -10, forever.pk: -2}


def test_a_lot_whose_expiry_moves_is_consumed_in_its_new_place(organization, pool):
    # Consumption reads the lot's dates from its holdings (copied for the index it walks):
    # a lot whose expiry changes afterwards must be taken in its new order, and not at all
    # once its new expiry has passed.
    early = grant(organization, 10, days_ago=300)
    late = grant(organization, 10, days_ago=5)
    now = timezone.now()
    Lot.objects.filter(pk=early.pk).update(expires_at=now + dt.timedelta(days=600))
    txn = redeem(pool, 4)
    assert dict(txn.entries.values_list("lot_id", "quantity")) == {late.pk: -4}
    Lot.objects.filter(pk=late.pk).update(expires_at=now - dt.timedelta(minutes=1))
    with pytest.raises(InsufficientCredits) as short:
        redeem(pool, 11)
    assert (short.value.available, short.value.shortfall) == (10, 1)
    assert selectors.account_balance(account=pool).total == 10


def test_short_redemption_changes_nothing_and_says_how_many_are_missing(organization, pool):
    grant(organization, 10)
    with pytest.raises(InsufficientCredits) as refused:
        redeem(pool, 13, idempotency_key="plan-1")
    assert refused.value.shortfall == 3
    assert "3 more needed" in str(refused.value)
    assert selectors.account_balance(account=pool).total == 10
    # Nothing was recorded, so the same request succeeds once credits arrive.
    assert not LedgerTransaction.objects.filter(idempotency_key="plan-1").exists()
    grant(organization, 3)
    redeem(pool, 13, idempotency_key="plan-1")
    assert selectors.account_balance(account=pool).total == 0


def test_overage_redeems_what_there_is_and_records_the_rest(organization, pool):
    grant(organization, 4)
    txn = redeem(pool, 10, allow_overage=True)
    assert selectors.account_balance(account=pool).total == 0
    assert Overage.objects.get(transaction=txn).quantity == 6


def test_replaying_a_key_returns_the_first_result_and_charges_once(organization, pool):
    grant(organization, 10)
    first = redeem(pool, 3, idempotency_key="confirm-7")
    again = redeem(pool, 3, idempotency_key="confirm-7")
    assert again.pk == first.pk
    assert selectors.account_balance(account=pool).total == 7


def test_a_key_replayed_with_other_parameters_is_refused(organization, pool):
    grant(organization, 10)
    redeem(pool, 3, idempotency_key="confirm-8")
    with pytest.raises(IdempotencyConflict):
        redeem(pool, 4, idempotency_key="confirm-8")
    assert selectors.account_balance(account=pool).total == 7


def test_keys_are_per_organization(organization, other_organization, pool):
    grant(organization, 5, idempotency_key="same-key")
    grant(other_organization, 5, idempotency_key="same-key")
    other_pool = services.pool_account(organization=other_organization)
    assert selectors.account_balance(account=other_pool).total == 5


def test_a_grant_replayed_returns_the_same_lot(organization, pool):
    def fulfil():
        return services.lot_grant(
            organization=organization,
            quantity=50,
            source="purchase",
            invoice_date=dt.date(2026, 11, 1),
            reference="cs_1",
            idempotency_key="stripe:cs_1",
        )

    first, again = fulfil(), fulfil()
    assert again.pk == first.pk
    assert selectors.account_balance(account=pool).total == 50


def test_a_hold_reserves_without_deducting(organization, pool):
    grant(organization, 100)
    hold(pool, 5)
    balance = selectors.account_balance(account=pool)
    assert (balance.total, balance.held, balance.available) == (100, 5, 95)
    with pytest.raises(InsufficientCredits) as refused:
        redeem(pool, 96)
    assert refused.value.shortfall == 1


def test_capture_deducts_and_release_gives_back(organization, pool):
    grant(organization, 100)
    started, left = hold(pool, 5), hold(pool, 5)
    services.hold_capture(hold=started)
    services.hold_release(hold=left)
    balance = selectors.account_balance(account=pool)
    assert (balance.total, balance.held, balance.available) == (95, 0, 95)
    started.refresh_from_db()
    assert started.status == Hold.Status.CAPTURED


def test_a_hold_is_resolved_once(organization, pool):
    grant(organization, 10)
    placed = hold(pool, 2)
    first = services.hold_capture(hold=placed)
    assert services.hold_capture(hold=placed).pk == first.pk  # a retry, not a second charge
    with pytest.raises(HoldNotActive):
        services.hold_release(hold=placed)
    assert selectors.account_balance(account=pool).total == 8


def test_a_hold_beyond_the_balance_needs_overage(organization, pool):
    grant(organization, 2)
    with pytest.raises(InsufficientCredits):
        hold(pool, 3)
    over = hold(pool, 3, allow_overage=True)
    assert selectors.account_balance(account=pool).over_assigned
    services.hold_capture(hold=over)
    assert Overage.objects.get().quantity == 1
    assert selectors.account_balance(account=pool).total == 0


def test_capture_after_the_lot_expired_is_refused_without_overage(organization, pool):
    grant(organization, 2, days_ago=364)
    placed = hold(pool, 2)
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        services.lots_expire()
        with pytest.raises(InsufficientCredits):
            services.hold_capture(hold=placed)
        placed.refresh_from_db()
        assert placed.status == Hold.Status.ACTIVE
        services.hold_release(hold=placed)


def test_transfers_move_lots_and_keep_their_expiry(organization, pool):
    course = services.course_account(organization=organization, course=CourseFactory())
    lot = grant(organization, 10, days_ago=100)
    services.credits_transfer(source=pool, destination=course, quantity=4, idempotency_key="a1")
    assert selectors.account_balance(account=course).total == 4
    assert selectors.account_balance(account=pool).total == 6
    assert course.holdings.get().lot == lot
    services.credits_transfer(source=course, destination=pool, quantity=4, idempotency_key="a2")
    assert selectors.account_balance(account=pool).total == 10


def test_a_transfer_cannot_take_held_credits(organization, pool):
    course = services.course_account(organization=organization, course=CourseFactory())
    grant(organization, 10)
    hold(pool, 8)
    with pytest.raises(InsufficientCredits) as refused:
        services.credits_transfer(source=pool, destination=course, quantity=3, idempotency_key="t")
    assert refused.value.shortfall == 1


def test_no_transfer_between_organizations(organization, other_organization, pool):
    other_pool = services.pool_account(organization=other_organization)
    grant(organization, 10)
    with pytest.raises(InvalidOperation):
        services.credits_transfer(
            source=pool, destination=other_pool, quantity=1, idempotency_key="x"
        )


def test_lots_expire_on_day_365_from_every_account(organization, pool):
    course = services.course_account(organization=organization, course=CourseFactory())
    invoiced = timezone.now()
    lot = grant(organization, 10)
    services.credits_transfer(source=pool, destination=course, quantity=4, idempotency_key="k")
    with time_machine.travel(invoiced + dt.timedelta(days=364, hours=23)):
        assert services.lots_expire() == 0
        figures = selectors.organization_balance(organization=organization)
        assert (figures.total, figures.earmarked) == (6, 4)
    # Gone at the end of the 365th local day after the invoice date.
    with time_machine.travel(lot.expires_at + dt.timedelta(seconds=1)):
        figures = selectors.organization_balance(organization=organization)
        assert (figures.total, figures.earmarked) == (0, 0)
        assert services.lots_expire() == 1
        assert services.lots_expire() == 0  # idempotent
    assert LedgerTransaction.objects.filter(kind="expire").count() == 1
    assert sorted(
        LedgerEntry.objects.filter(transaction__kind="expire").values_list("quantity", flat=True)
    ) == [-6, -4]


def test_an_expired_lot_cannot_be_spent_before_the_job_runs(organization, pool):
    grant(organization, 10, days_ago=366)
    with pytest.raises(InsufficientCredits):
        redeem(pool, 1)


def test_revoking_a_lot_removes_only_what_is_left(organization, pool):
    lot = grant(organization, 10, reference="cs_refunded")
    redeem(pool, 7)
    txn = services.lot_revoke(lot=lot, reason="charge.refunded", idempotency_key="rev-1")
    assert sum(txn.entries.values_list("quantity", flat=True)) == -3
    assert selectors.account_balance(account=pool).total == 0
    again = services.lot_revoke(lot=lot, reason="charge.refunded", idempotency_key="rev-1")
    assert again.pk == txn.pk


def test_support_adjusts_with_a_reason_and_is_recorded(organization, pool):
    staff = UserFactory(is_staff=True)
    services.credits_adjust(
        account=pool, quantity=5, reason="goodwill", actor=staff, idempotency_key="adj-1"
    )
    services.credits_adjust(
        account=pool, quantity=-2, reason="typo", actor=staff, idempotency_key="adj-2"
    )
    assert selectors.account_balance(account=pool).total == 3
    assert list(LedgerTransaction.objects.filter(kind="adjust").values_list("actor", "memo")) == [
        (staff.pk, "typo"),
        (staff.pk, "goodwill"),
    ]
    with pytest.raises(InvalidOperation):
        services.credits_adjust(
            account=pool, quantity=1, reason="x", actor=UserFactory(), idempotency_key="adj-3"
        )


def test_the_database_refuses_to_rewrite_or_delete_ledger_rows(organization, pool):
    grant(organization, 1)
    entry = LedgerEntry.objects.get()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(quantity=1000)
    # Raw SQL: the database itself refuses, whatever code (or person) is talking to it.
    for table in ("credits_ledgerentry", "credits_ledgertransaction"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names


def test_the_database_refuses_entries_that_refer_to_nothing(organization, pool):
    grant(organization, 1)
    entry = LedgerEntry.objects.get()

    def like_entry(**changes) -> LedgerEntry:
        fields = {
            "transaction_id": entry.transaction_id,
            "account_id": entry.account_id,
            "lot_id": entry.lot_id,
            "quantity": 1,
            "created_at": entry.created_at,
        }
        return LedgerEntry(**(fields | changes))

    for what in ("transaction", "account", "lot"):
        with (
            pytest.raises(DatabaseError, match=f"refers to a missing {what} {10**12}"),
            transaction.atomic(),
        ):
            # Beside a valid row: the check covers every row the statement inserted.
            LedgerEntry.objects.bulk_create([like_entry(), like_entry(**{f"{what}_id": 10**12})])
    # ...because what entries refer to is never deleted.
    for table in ("credits_lot", "credits_account"):
        with (
            pytest.raises(DatabaseError, match="DELETE refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    assert LedgerEntry.objects.count() == 1


def test_the_database_refuses_negative_balances(organization, pool):
    grant(organization, 1)
    with pytest.raises(DatabaseError, match="account_balance_nonneg"), transaction.atomic():
        type(pool).objects.filter(pk=pool.pk).update(balance=-1)


@pytest.mark.parametrize("quantity", [0, -1, 1.5, True])
def test_quantities_must_be_positive_whole_numbers(organization, pool, quantity):
    with pytest.raises(InvalidOperation):
        redeem(pool, quantity)


def test_the_audit_names_a_holding_whose_copy_of_its_lots_dates_is_wrong(organization, pool):
    lot = grant(organization, 5)
    assert ledger_audit().ok
    # A write that bypassed the trigger (a Holding saved through the ORM writes these back
    # as they were read): consumption would take the lot as never expiring.
    lot.holdings.update(lot_expires_at=None)
    report = ledger_audit()
    assert not report.ok
    assert any("copy of its lot's dates" in violation for violation in report.violations)
    # Put right, the ledger adds up again.
    lot.holdings.update(lot_expires_at=lot.expires_at)
    assert ledger_audit().ok
