"""Store, answer, then process: an event whose handler fails stays stored with its error, is
answered 200, and is applied by a retry once the cause is fixed. Nothing talks to Stripe
while a transaction is open."""

import datetime as dt
import json
import time
import uuid

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse

from billing import tasks, webhooks
from billing.models import OverageInvoice, Purchase, StripeEvent, SubscriptionPlan
from credits import selectors
from credits import services as ledger
from credits.models import Overage
from tests.accounts.factories import UserFactory
from tests.billing.delivery import URL, deliver
from tests.billing.objects import buy, session
from tests.credits.factories import grant, redeem

START = 1_790_000_000


def credits_of(organization) -> int:
    return selectors.organization_balance(organization=organization).total


def period_invoice(organization, *, price="price_new", organization_id=None, plan_id=None):
    meta = {"organization_id": str(organization_id or organization.pk)}
    if plan_id:
        meta["plan_id"] = str(plan_id)
    return {
        "id": "in_new_plan",
        "object": "invoice",
        "billing_reason": "subscription_create",
        "currency": "usd",
        "amount_paid": 45_000,
        "parent": {"subscription_details": {"subscription": "sub_9", "metadata": meta}},
        "status_transitions": {"paid_at": START},
        "lines": {
            "data": [
                {
                    "amount": 45_000,
                    "pricing": {"price_details": {"price": price}},
                    "period": {"start": START, "end": START + 30 * 86400},
                }
            ]
        },
    }


@pytest.fixture
def staff_client(db):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.mark.django_db
def test_a_failing_handler_keeps_the_event_answers_200_and_support_retries_it(
    events, organization, prices, staff_client
):
    # The invoice names a price no plan has yet (support forgot to set it in the admin).
    response = deliver(events, "invoice.paid", period_invoice(organization), event_id="evt_p")
    assert response.status_code == 200
    record = StripeEvent.objects.get(event_id="evt_p")
    assert (record.status, record.attempts, record.processed_at) == ("failed", 1, None)
    assert "names no known plan" in record.last_error
    assert credits_of(organization) == 0
    changelist = staff_client.get(reverse("admin:billing_stripeevent_changelist"))
    assert b"evt_p" in changelist.content and b"Process again" in changelist.content

    SubscriptionPlan.objects.filter(interval="month", rank=1).update(stripe_price_id="price_new")
    staff_client.post(
        reverse("admin:billing_stripeevent_changelist"),
        {"action": "process_again", "_selected_action": [record.pk]},
    )
    record.refresh_from_db()
    assert (record.status, record.attempts, record.last_error) == ("processed", 2, "")
    assert record.processed_at is not None
    assert credits_of(organization) == 50
    # Processed: a further retry, or the same event again, changes nothing.
    assert webhooks.event_process(event_pk=record.pk) is False
    deliver(events, "invoice.paid", period_invoice(organization), event_id="evt_p")
    assert credits_of(organization) == 50


@pytest.mark.django_db
def test_an_organization_that_no_longer_exists_is_an_error_kept_for_support(
    events, organization, prices
):
    plan = SubscriptionPlan.objects.get(interval="month", rank=1)
    invoice = period_invoice(organization, price="", organization_id=10**9, plan_id=plan.pk)
    assert deliver(events, "invoice.paid", invoice, event_id="evt_gone").status_code == 200
    record = StripeEvent.objects.get(event_id="evt_gone")
    assert record.status == "failed"
    assert f"Organization {10**9} does not exist" in record.last_error
    # The task's retry finds the same cause: still stored, still failed, one attempt more.
    with pytest.raises(Exception, match="does not exist"):
        tasks.stripe_event_process.apply(args=[record.pk], throw=True)
    record.refresh_from_db()
    assert (record.status, record.attempts) == ("failed", 2)


@pytest.mark.django_db
def test_a_duplicate_lot_reference_is_an_error_kept_for_support(
    admin_client, events, organization, prices, fake_stripe
):
    purchase = buy(admin_client)
    grant(organization, 5, reference=purchase.checkout_session_id)  # the reference is taken
    response = deliver(events, "checkout.session.completed", session(purchase), event_id="evt_d")
    assert response.status_code == 200
    record = StripeEvent.objects.get(event_id="evt_d")
    assert record.status == "failed" and "exists already" in record.last_error
    assert Purchase.objects.get().status == "pending"


@pytest.mark.django_db
def test_a_missing_metadata_key_is_an_error_kept_for_support(events, organization, prices):
    response = deliver(
        events,
        "checkout.session.completed",
        {"id": "cs_sub", "mode": "subscription", "subscription": "sub_1", "metadata": {}},
        event_id="evt_m",
    )
    assert response.status_code == 200
    assert "names no plan" in StripeEvent.objects.get(event_id="evt_m").last_error


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        json.dumps({"id": "evt_x", "object": "event", "type": "charge.refunded"}),
        json.dumps({"id": "evt_y", "type": "invoice.paid", "created": 1, "data": {"object": 3}}),
        json.dumps([1, 2, 3]),
        json.dumps({"id": "x" * 300, "type": "t", "created": 1, "data": {"object": {}}}),
        "not json at all",
    ],
)
def test_a_malformed_but_signed_event_is_stored_failed_and_answered_200(events, payload):
    now = int(time.time())
    response = Client().post(
        URL,
        payload,
        content_type="application/json",
        headers={"Stripe-Signature": events.sign(payload, timestamp=now)},
    )
    assert response.status_code == 200
    record = StripeEvent.objects.get()
    assert record.status == "failed" and record.last_error
    # The same payload again is recognised, even without an id of its own.
    Client().post(
        URL,
        payload,
        content_type="application/json",
        headers={"Stripe-Signature": events.sign(payload, timestamp=now)},
    )
    assert StripeEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_nul_character_in_a_signed_event_is_stored_without_it(events):
    response = deliver(events, "customer.created", {"id": "cus_1", "name": "a\x00b"})
    assert response.status_code == 200
    assert StripeEvent.objects.get().payload["data"]["object"]["name"] == "ab"


@pytest.mark.django_db(transaction=True)
def test_processing_is_queued_after_the_event_committed(events, monkeypatch):
    seen = []

    def delay(event_pk):
        # Another connection sees the row: it was committed before the task was queued.
        seen.append((connection.in_atomic_block, _committed(event_pk)))

    monkeypatch.setattr(tasks.stripe_event_process, "delay", delay)
    deliver(events, "customer.created", {"id": "cus_1"})
    assert seen == [(False, True)]


def _committed(event_pk: int) -> bool:
    import threading

    found = []
    thread = threading.Thread(
        target=lambda: (
            found.append(StripeEvent.objects.filter(pk=event_pk).exists()),
            connection.close(),
        )
    )
    thread.start()
    thread.join()
    return found == [True]


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_is_down_still_gets_stripe_its_200_and_the_event_is_sent_later(
    events, admin_client, organization, prices, fake_stripe, monkeypatch
):
    purchase = buy(admin_client)

    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.stripe_event_process, "delay", broker_down)
        response = deliver(events, "checkout.session.completed", session(purchase))
    assert response.status_code == 200
    assert StripeEvent.objects.get().status == "pending"
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(minutes=11)):
        assert tasks.stripe_events_requeue() == 1
    assert StripeEvent.objects.get().status == "processed"
    assert credits_of(organization) == 100


@pytest.mark.django_db(transaction=True)
def test_no_stripe_request_is_made_with_a_transaction_open(
    events, admin_client, organization, prices, fake_stripe
):
    purchase = buy(admin_client)  # the customer, the Checkout Session
    deliver(events, "checkout.session.completed", session(purchase))  # the hosted invoice URL
    assert Purchase.objects.get().invoice_url.startswith("https://invoice.stripe.test/")
    organization.when_short = "bill_overage"
    organization.save()
    with time_machine.travel(dt.datetime(2026, 10, 10, 12, tzinfo=dt.UTC)):
        redeem(ledger.pool_account(organization=organization), 103, allow_overage=True)
    with time_machine.travel(dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)):
        tasks.overage_invoice(organization.pk)  # the invoice item, the invoice
    plan = SubscriptionPlan.objects.get(interval="month", rank=1)
    SubscriptionPlan.objects.filter(pk=plan.pk).update(stripe_price_id="price_new")
    deliver(events, "invoice.paid", period_invoice(organization))
    team = SubscriptionPlan.objects.get(interval="month", rank=2)
    SubscriptionPlan.objects.filter(pk=team.pk).update(stripe_price_id="price_team")
    fake_stripe.subscriptions["sub_9"] = {"id": "sub_9", "items": {"data": [{"id": "si_9"}]}}
    admin_client.post(reverse("billing:subscription_upgrade"), {"plan": team.pk})  # GET, POST
    paths = [call.path for call in fake_stripe.calls]
    assert "/v1/checkout/sessions" in paths and "/v1/invoices" in paths
    assert paths.count("/v1/subscriptions/sub_9") == 2
    assert fake_stripe.in_transaction == [False] * len(fake_stripe.calls)


@pytest.mark.django_db
def test_overage_is_claimed_before_stripe_is_asked_and_a_retry_bills_it_once(
    organization, prices, fake_stripe
):
    organization.when_short = "bill_overage"
    organization.save()
    with time_machine.travel(dt.datetime(2026, 10, 10, 12, tzinfo=dt.UTC)):
        redeem(ledger.pool_account(organization=organization), 3, allow_overage=True)
    fake_stripe.refuse_next["/v1/invoices"] = 1
    with time_machine.travel(dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)):
        with pytest.raises(Exception, match="refused"):
            tasks.overage_invoice.apply(args=[organization.pk], throw=True, retries=5)
        row = Overage.objects.get()
        assert (row.billed_at, row.invoice_reference) == (
            None,
            f"overage:{organization.pk}:2026-10",
        )
        assert OverageInvoice.objects.get().status == "invoicing"
        invoice_id = tasks.overage_invoice(organization.pk)
    row.refresh_from_db()
    assert row.billed_at is not None and row.invoice_reference == invoice_id
    items = fake_stripe.calls_to("/v1/invoiceitems")
    assert {c.idempotency_key for c in items} == {f"overage:{organization.pk}:2026-10:item"}
    assert OverageInvoice.objects.get().status == "open"


@pytest.mark.django_db
def test_a_failed_overage_payment_is_shown_to_the_admin_and_to_staff(
    events, admin_client, staff_client, organization, prices, fake_stripe
):
    organization.when_short = "bill_overage"
    organization.save()
    with time_machine.travel(dt.datetime(2026, 10, 10, 12, tzinfo=dt.UTC)):
        redeem(ledger.pool_account(organization=organization), 3, allow_overage=True)
    with time_machine.travel(dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)):
        invoice_id = tasks.overage_invoice(organization.pk)
    failed = {
        "id": invoice_id,
        "object": "invoice",
        "billing_reason": "manual",
        "metadata": {"organization_id": str(organization.pk), "overage_month": "2026-10"},
        "attempt_count": 1,
        "next_payment_attempt": START,
        "hosted_invoice_url": "https://invoice.stripe.test/pay/overage",
    }
    deliver(events, "invoice.payment_failed", failed)
    page = admin_client.get(reverse("billing:overview")).content.decode()
    assert 'data-testid="overage-payment-failed"' in page
    assert "overage invoice for 2026-10 ($30.00) could not be charged" in page
    assert 'href="https://invoice.stripe.test/pay/overage"' in page
    staff = staff_client.get(
        reverse("admin:billing_overageinvoice_changelist"), {"status": "payment_failed"}
    )
    assert invoice_id.encode() in staff.content
    # Paid later (or its events in the other order): the warning goes.
    deliver(events, "invoice.paid", {**failed, "status": "paid"})
    deliver(events, "invoice.payment_failed", failed)
    assert OverageInvoice.objects.get().status == "paid"
    page = admin_client.get(reverse("billing:overview")).content.decode()
    assert 'data-testid="overage-payment-failed"' not in page


@pytest.mark.django_db
def test_an_expired_session_cancels_the_purchase_and_the_page_stops_waiting(
    events, admin_client, organization, prices, fake_stripe
):
    purchase = buy(admin_client)
    expired = session(purchase, status="expired", payment_status="unpaid", payment_intent=None)
    deliver(events, "checkout.session.expired", expired)
    assert Purchase.objects.get().status == "cancelled"
    page = admin_client.get(reverse("billing:purchase", args=[purchase.pk])).content.decode()
    assert "hx-trigger" not in page
    assert "cancelled or expired before it was paid" in page
    assert f'href="{reverse("billing:add_credits")}"' in page
    billing = admin_client.get(reverse("billing:overview")).content.decode()
    assert '<td data-testid="purchase-status">Cancelled</td>' in billing


@pytest.mark.django_db
def test_the_success_page_learns_of_an_expired_session_from_stripe(
    admin_client, organization, prices, fake_stripe
):
    purchase = buy(admin_client)
    fake_stripe.sessions[purchase.checkout_session_id]["status"] = "expired"
    page = admin_client.get(reverse("billing:purchase", args=[purchase.pk])).content.decode()
    assert "cancelled or expired" in page


@pytest.mark.django_db
def test_a_stripe_failure_leaves_a_pending_purchase_the_same_form_resumes(
    admin_client, organization, prices, fake_stripe
):
    form = {"quantity": 12, "request_token": str(uuid.uuid4())}
    fake_stripe.refuse_next["/v1/checkout/sessions"] = 1
    first = admin_client.post(reverse("billing:purchase_create"), form, follow=True)
    assert b"Nothing was charged" in first.content
    assert Purchase.objects.get().checkout_session_id is None
    again = admin_client.post(reverse("billing:purchase_create"), form)
    purchase = Purchase.objects.get()
    assert again["Location"] == purchase.checkout_url
    keys = {c.idempotency_key for c in fake_stripe.calls_to("/v1/checkout/sessions")}
    assert keys == {f"purchase:{purchase.pk}:checkout"}
