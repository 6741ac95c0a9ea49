"""Webhooks posted as Stripe posts them: JSON signed with the SDK's own helper."""

import datetime as dt
import time
import zoneinfo
from collections import Counter

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import StripeEvent
from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import Lot
from tests.billing.delivery import URL, deliver
from tests.billing.objects import buy, charge, dispute, session
from tests.support.threads import run_threads


@pytest.fixture
def purchase(admin_client, admin, prices, fake_stripe):
    return buy(admin_client)


def credits_of(organization) -> int:
    return selectors.organization_balance(organization=organization).total


def assert_audit_clean():
    report = ledger_audit()
    assert report.ok, report.violations


@pytest.mark.django_db
def test_a_paid_checkout_grants_one_lot_valid_365_days(events, purchase, organization):
    response = deliver(events, "checkout.session.completed", session(purchase))
    assert response.status_code == 200
    purchase.refresh_from_db()
    assert purchase.status == "paid"
    lot = purchase.lot
    assert (lot.quantity, lot.reference) == (100, purchase.checkout_session_id)
    # Usable through the 365th local day after the invoice date (docs/credit-model.md, Lots).
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    last_day = (lot.expires_at - dt.timedelta(microseconds=1)).astimezone(zone).date()
    assert last_day == lot.invoiced_at.astimezone(zone).date() + dt.timedelta(days=365)
    assert credits_of(organization) == 100
    assert purchase.invoice_url == f"https://invoice.stripe.test/in_test_{purchase.pk}"
    assert_audit_clean()


@pytest.mark.django_db
def test_an_unpaid_completion_waits_for_the_async_payment(events, purchase, organization):
    deliver(events, "checkout.session.completed", session(purchase, payment_status="unpaid"))
    assert credits_of(organization) == 0
    deliver(events, "checkout.session.async_payment_succeeded", session(purchase))
    assert credits_of(organization) == 100


@pytest.mark.django_db
def test_a_failed_async_payment_marks_the_purchase_failed(events, purchase, organization):
    deliver(
        events, "checkout.session.async_payment_failed", session(purchase, payment_status="unpaid")
    )
    purchase.refresh_from_db()
    assert purchase.status == "failed"
    assert credits_of(organization) == 0


@pytest.mark.django_db
def test_the_same_event_delivered_5_times_grants_once(events, purchase, organization):
    answers = [
        deliver(events, "checkout.session.completed", session(purchase), event_id="evt_dup").json()
        for _ in range(5)
    ]
    assert [a["duplicate"] for a in answers] == [False, True, True, True, True]
    assert credits_of(organization) == 100
    assert StripeEvent.objects.filter(event_id="evt_dup").count() == 1


@pytest.mark.django_db
def test_events_out_of_order_grant_once_and_never_undo_a_payment(events, purchase, organization):
    deliver(events, "checkout.session.async_payment_succeeded", session(purchase))
    deliver(events, "checkout.session.completed", session(purchase, payment_status="unpaid"))
    deliver(events, "checkout.session.completed", session(purchase))
    deliver(events, "checkout.session.async_payment_failed", session(purchase))
    purchase.refresh_from_db()
    assert purchase.status == "paid"
    assert credits_of(organization) == 100
    assert Lot.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_8_simultaneous_deliveries_grant_exactly_once(events, purchase, organization):
    # Half the same event redelivered, half distinct events for the same session.
    def worker(n: int) -> int:
        return deliver(
            events,
            "checkout.session.completed",
            session(purchase),
            event_id="evt_same" if n % 2 else f"evt_other_{n}",
        ).status_code

    assert Counter(run_threads(8, worker)) == Counter({200: 8})
    assert credits_of(organization) == 100
    assert Lot.objects.count() == 1
    assert_audit_clean()


@pytest.mark.django_db
def test_a_bad_signature_is_refused(events, purchase, organization):
    response = deliver(events, "checkout.session.completed", session(purchase), secret="whsec_x")
    assert response.status_code == 400
    assert credits_of(organization) == 0
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_a_stale_timestamp_is_refused(events, purchase, organization):
    stale = int(time.time()) - 600
    response = deliver(events, "checkout.session.completed", session(purchase), timestamp=stale)
    assert response.status_code == 400
    assert credits_of(organization) == 0


@pytest.mark.django_db
def test_a_missing_signature_is_refused(purchase):
    response = Client().post(URL, "{}", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_a_refund_after_part_was_spent_revokes_only_what_is_left(events, purchase, organization):
    deliver(events, "checkout.session.completed", session(purchase))
    pool = services.pool_account(organization=organization)
    services.credits_redeem(account=pool, quantity=30, reference="plan", idempotency_key="p1")
    deliver(events, "charge.refunded", charge(purchase, refunded=purchase.amount_minor))
    assert credits_of(organization) == 0
    # A dispute on the same payment afterwards finds nothing more to take.
    deliver(events, "charge.dispute.created", dispute(purchase))
    assert credits_of(organization) == 0
    purchase.refresh_from_db()
    assert purchase.lot.revoked_at is not None
    assert_audit_clean()


@pytest.mark.django_db
def test_unknown_event_types_are_acknowledged_and_stored(events):
    response = deliver(events, "customer.created", {"id": "cus_9"})
    assert response.status_code == 200
    assert StripeEvent.objects.get().type == "customer.created"


@pytest.mark.django_db
def test_the_success_page_fulfils_when_it_arrives_before_the_webhook(
    admin_client, purchase, fake_stripe, events, organization
):
    fake_stripe.sessions[purchase.checkout_session_id].update(
        payment_status="paid", payment_intent=f"pi_test_{purchase.pk}"
    )
    page = admin_client.get(reverse("billing:purchase", args=[purchase.pk]))
    assert b"100 credits added" in page.content
    assert b"Continue where you were" in page.content
    # The webhook that follows finds the purchase paid and grants nothing more.
    deliver(events, "checkout.session.completed", session(purchase))
    assert credits_of(organization) == 100


@pytest.mark.django_db
def test_a_pending_purchase_page_polls(admin_client, purchase):
    page = admin_client.get(reverse("billing:purchase", args=[purchase.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert "Waiting for Stripe to confirm" in page
