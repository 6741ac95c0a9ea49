"""Refunds and disputes as Stripe reports them, in any order: proportional, never below
zero, never twice, parked until the payment is known, given back when a dispute is won."""

import datetime as dt
import threading
import time

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from billing import refunds
from billing.models import Payment, Purchase, StripeEvent
from credits import selectors
from credits import services as ledger
from credits.audit import ledger_audit
from credits.models import LedgerTransaction, Lot
from tests.billing.delivery import deliver
from tests.billing.objects import buy, charge, dispute, session
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, key, redeem

pytestmark = pytest.mark.django_db


@pytest.fixture
def purchase(admin_client, admin, prices, fake_stripe):
    return buy(admin_client, 100)  # $1,000.00


def credits_of(organization) -> int:
    return selectors.organization_balance(organization=organization).total


def assert_audit_clean():
    report = ledger_audit()
    assert report.ok, report.violations


def status_of(purchase) -> str:
    return Purchase.objects.get(pk=purchase.pk).status


def test_partial_refunds_revoke_in_proportion_and_only_the_increment(
    events, purchase, organization
):
    deliver(events, "checkout.session.completed", session(purchase))
    deliver(events, "charge.refunded", charge(purchase, refunded=25_000))  # $250 of $1,000
    assert credits_of(organization) == 75
    assert status_of(purchase) == "partially_refunded"
    deliver(events, "charge.refunded", charge(purchase, refunded=60_000))  # $350 more
    assert credits_of(organization) == 40
    # The first event again, late and under a new id: a smaller cumulative figure, nothing.
    deliver(events, "charge.refunded", charge(purchase, refunded=25_000))
    assert credits_of(organization) == 40
    revocations = LedgerTransaction.objects.filter(kind="revoke").order_by("pk")
    assert [t.quantity for t in revocations] == [25, 35]
    deliver(events, "charge.refunded", charge(purchase, refunded=100_000))
    assert credits_of(organization) == 0
    assert status_of(purchase) == "refunded"
    assert Lot.objects.get().revoked_at is not None
    assert_audit_clean()


def test_a_refund_rounds_against_keeping_credits_that_were_paid_back(
    events, purchase, organization
):
    deliver(events, "checkout.session.completed", session(purchase))
    deliver(events, "charge.refunded", charge(purchase, refunded=1))  # one cent
    assert credits_of(organization) == 99


def test_a_refund_that_arrives_before_the_payment_is_parked_then_applied(
    events, purchase, organization
):
    deliver(events, "charge.refunded", charge(purchase, refunded=50_000))
    assert Payment.objects.get().refunded_minor == 50_000
    assert credits_of(organization) == 0
    deliver(events, "checkout.session.completed", session(purchase))
    assert credits_of(organization) == 50
    assert status_of(purchase) == "partially_refunded"
    assert_audit_clean()


def test_a_refund_parked_before_the_success_page_fulfils_is_applied_too(
    admin_client, events, purchase, organization, fake_stripe
):
    deliver(events, "charge.refunded", charge(purchase, refunded=100_000))
    fake_stripe.sessions[purchase.checkout_session_id].update(
        payment_status="paid", payment_intent=f"pi_test_{purchase.pk}"
    )
    page = admin_client.get(reverse("billing:purchase", args=[purchase.pk])).content.decode()
    assert "Refunded" in page
    assert credits_of(organization) == 0


def test_only_what_is_left_is_revoked_and_spent_credits_stay_spent(events, purchase, organization):
    deliver(events, "checkout.session.completed", session(purchase))
    pool = ledger.pool_account(organization=organization)
    redeem(pool, 70)
    deliver(events, "charge.refunded", charge(purchase, refunded=50_000))
    assert credits_of(organization) == 0  # 50 asked, 30 left
    assert_audit_clean()


def test_a_dispute_revokes_and_a_won_dispute_restores_exactly_what_it_took(
    events, purchase, organization
):
    deliver(events, "checkout.session.completed", session(purchase))
    pool = ledger.pool_account(organization=organization)
    redeem(pool, 70)
    deliver(events, "charge.dispute.created", dispute(purchase))
    assert credits_of(organization) == 0
    assert status_of(purchase) == "disputed"
    deliver(events, "charge.dispute.closed", dispute(purchase, status="won"))
    assert credits_of(organization) == 30
    assert status_of(purchase) == "paid"
    # Redelivered, under new ids: nothing more either way.
    deliver(events, "charge.dispute.closed", dispute(purchase, status="won"))
    deliver(events, "charge.dispute.created", dispute(purchase))
    assert credits_of(organization) == 30
    restore = LedgerTransaction.objects.get(kind="restore")
    assert restore.memo == "Stripe: dispute won"
    assert_audit_clean()


def test_a_dispute_that_arrives_first_is_applied_with_the_payment(events, purchase, organization):
    deliver(events, "charge.dispute.created", dispute(purchase, amount=40_000))
    deliver(events, "checkout.session.completed", session(purchase))
    assert credits_of(organization) == 60
    deliver(events, "charge.dispute.closed", dispute(purchase, status="lost", amount=40_000))
    assert credits_of(organization) == 60
    assert status_of(purchase) == "disputed"
    assert_audit_clean()


def test_a_won_dispute_seen_before_its_opening_revokes_nothing(events, purchase, organization):
    now = int(time.time())
    deliver(events, "checkout.session.completed", session(purchase))
    deliver(events, "charge.dispute.closed", dispute(purchase, status="won"), created=now)
    deliver(events, "charge.dispute.created", dispute(purchase), created=now - 600)
    assert credits_of(organization) == 100
    assert not LedgerTransaction.objects.filter(kind="revoke").exists()


def test_a_refund_in_another_currency_is_kept_as_an_error(events, purchase, organization):
    deliver(events, "checkout.session.completed", session(purchase))
    deliver(events, "charge.refunded", charge(purchase, refunded=50_000, currency="eur"))
    assert credits_of(organization) == 100
    failed = StripeEvent.objects.get(type="charge.refunded")
    assert failed.status == "failed" and "EUR" in failed.last_error


def test_the_billing_page_shows_refunded_and_disputed_purchases(
    admin_client, events, organization, prices, fake_stripe
):
    refunded, disputed = buy(admin_client), buy(admin_client)
    for item in (refunded, disputed):
        deliver(events, "checkout.session.completed", session(item))
    deliver(events, "charge.refunded", charge(refunded, refunded=30_000))
    deliver(events, "charge.dispute.created", dispute(disputed))
    page = admin_client.get(reverse("billing:overview")).content.decode()
    assert '<td data-testid="purchase-status">Partially refunded</td>' in page
    assert '<td data-testid="purchase-status">Disputed</td>' in page


# --- The ledger functions underneath ---------------------------------------------------------


def test_a_partial_revocation_takes_the_pool_first_and_keeps_the_lot_valid(organization):
    lot = grant(organization, 100)
    pool = ledger.pool_account(organization=organization)
    course = ledger.course_account(organization=organization, course=CourseFactory())
    ledger.credits_transfer(source=pool, destination=course, quantity=80, idempotency_key=key())
    revocation = ledger.lot_revoke(lot=lot, quantity=50, reason="test", idempotency_key="r1")
    pool.refresh_from_db()
    course.refresh_from_db()
    assert (pool.balance, course.balance) == (0, 50)
    assert Lot.objects.get().revoked_at is None
    again = ledger.lot_revoke(lot=lot, quantity=50, reason="test", idempotency_key="r1")
    assert again.pk == revocation.pk
    restored = ledger.lot_restore(revocation=revocation, reason="won")
    assert ledger.lot_restore(revocation=revocation, reason="won").pk == restored.pk
    pool.refresh_from_db()
    course.refresh_from_db()
    assert (pool.balance, course.balance) == (20, 80)
    assert_audit_clean()


def test_a_restoration_into_a_lot_that_expired_since_gives_nothing(organization):
    lot = grant(organization, 10, expires_at=timezone.now() + dt.timedelta(days=1))
    revocation = ledger.lot_revoke(lot=lot, quantity=4, reason="test", idempotency_key="r2")
    ledger.lots_expire(now=timezone.now() + dt.timedelta(days=2))
    restored = ledger.lot_restore(revocation=revocation, reason="won")
    assert restored.quantity == 4 and not restored.entries.exists()
    assert credits_of(organization) == 0
    assert_audit_clean()


def test_only_a_revocation_can_be_restored(organization):
    lot = grant(organization, 10)
    with pytest.raises(ledger.InvalidOperation):
        ledger.lot_restore(revocation=lot.entries.get().transaction, reason="no")


@pytest.mark.django_db(transaction=True)
def test_a_refund_recorded_while_its_payment_is_being_fulfilled_is_not_lost(
    events, admin_client, organization, prices, fake_stripe, monkeypatch
):
    purchase = buy(admin_client)
    looked = threading.Event()
    look_up = refunds._grant

    def grant_then_wait(reference):
        found = look_up(reference)
        if threading.current_thread().name == "refund":
            # The refund found no paid purchase and has not committed yet: the fulfilment
            # commits and reconciles meanwhile.
            looked.set()
            time.sleep(1)
        return found

    monkeypatch.setattr(refunds, "_grant", grant_then_wait)

    def refund():
        try:
            deliver(events, "charge.refunded", charge(purchase, refunded=50_000))
        finally:
            connection.close()

    thread = threading.Thread(target=refund, name="refund")
    thread.start()
    assert looked.wait(10)
    deliver(events, "checkout.session.completed", session(purchase))
    thread.join()
    assert credits_of(organization) == 50
    assert status_of(purchase) == "partially_refunded"


def test_a_refund_during_an_inquiry_stays_refunded_when_the_inquiry_closes(
    admin_client, admin, prices, fake_stripe, events, organization
):
    purchase = buy(admin_client, 100)
    deliver(events, "checkout.session.completed", session(purchase))
    deliver(events, "charge.dispute.created", dispute(purchase, status="warning_needs_response"))
    assert credits_of(organization) == 100  # an inquiry takes no money
    deliver(events, "charge.refunded", charge(purchase, refunded=purchase.amount_minor // 2))
    assert credits_of(organization) == 50
    deliver(
        events,
        "charge.dispute.closed",
        dispute(purchase, status="warning_closed"),
        created=int(time.time()) + 10,
    )
    assert credits_of(organization) == 50
