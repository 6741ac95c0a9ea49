import json
import time
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import Subscription, SubscriptionPlan
from credits import selectors
from credits.models import Lot

pytestmark = pytest.mark.django_db

WEBHOOK = reverse("billing:stripe_webhook")


@pytest.fixture
def plans(prices):
    SubscriptionPlan.objects.update(stripe_price_id="")
    for plan in SubscriptionPlan.objects.all():
        plan.stripe_price_id = f"price_{plan.interval}_{plan.rank}"
        plan.save()
    return {p.name: p for p in SubscriptionPlan.objects.filter(interval="month")}


def deliver(events, type_, obj, event_id=None):
    payload = json.dumps(events.event(type_, obj, created=int(time.time()), event_id=event_id))
    return Client().post(
        WEBHOOK,
        payload,
        content_type="application/json",
        headers={"Stripe-Signature": events.sign(payload)},
    )


def paid_invoice(organization, plan, *, subscription="sub_1", start=1_790_000_000, reason=None):
    return {
        "id": f"in_{subscription}_{start}_{reason or 'cycle'}",
        "object": "invoice",
        "billing_reason": reason or "subscription_cycle",
        "parent": {
            "subscription_details": {
                "subscription": subscription,
                "metadata": {"organization_id": str(organization.pk), "plan_id": str(plan.pk)},
            }
        },
        "status_transitions": {"paid_at": start + 60},
        "lines": {"data": [{"period": {"start": start, "end": start + 30 * 86400}}]},
    }


def credits_of(organization):
    return selectors.organization_balance(organization=organization).total


def test_subscribing_opens_a_subscription_checkout(admin_client, organization, plans, fake_stripe):
    response = admin_client.post(
        reverse("billing:subscribe"),
        {"plan": plans["Starter"].pk, "request_token": str(uuid.uuid4())},
    )
    call = fake_stripe.calls_to("/v1/checkout/sessions")[0]
    assert response["Location"].startswith("https://checkout.stripe.test/")
    assert call.params["mode"] == "subscription"
    assert call.params["line_items[0][price]"] == "price_month_1"
    assert call.params["subscription_data[metadata][plan_id]"] == str(plans["Starter"].pk)
    assert call.idempotency_key.startswith(f"subscribe:{organization.pk}:")


def test_each_paid_period_grants_the_plan_credits_once(events, organization, plans):
    invoice = paid_invoice(organization, plans["Team"], reason="subscription_create")
    for _ in range(3):  # redelivered under new event ids too
        deliver(events, "invoice.paid", invoice)
    assert credits_of(organization) == 200
    next_period = paid_invoice(organization, plans["Team"], start=1_790_000_000 + 30 * 86400)
    deliver(events, "invoice.paid", next_period)
    assert credits_of(organization) == 400
    assert Lot.objects.filter(source="subscription").count() == 2
    assert Subscription.objects.get().status == "active"


def test_an_invoice_paid_before_the_checkout_event_still_grants(events, organization, plans):
    deliver(events, "invoice.paid", paid_invoice(organization, plans["Starter"]))
    deliver(
        events,
        "checkout.session.completed",
        {
            "id": "cs_1",
            "mode": "subscription",
            "subscription": "sub_1",
            "metadata": {
                "organization_id": str(organization.pk),
                "plan_id": str(plans["Starter"].pk),
            },
        },
    )
    assert credits_of(organization) == 50
    assert Subscription.objects.get().plan == plans["Starter"]


def test_upgrading_grants_the_difference_at_once(
    admin_client, events, organization, plans, fake_stripe
):
    deliver(events, "invoice.paid", paid_invoice(organization, plans["Starter"]))
    Subscription.objects.update(stripe_item_id="si_1")
    response = admin_client.post(
        reverse("billing:subscription_upgrade"), {"plan": plans["Team"].pk}, follow=True
    )
    assert b"Upgraded to Team" in response.content
    assert credits_of(organization) == 200  # 50 + (200 - 50)
    update = fake_stripe.calls_to("/v1/subscriptions/sub_1")[0]
    assert update.params["items[0][price]"] == "price_month_2"
    assert update.params["proration_behavior"] == "always_invoice"
    # The proration invoice Stripe sends next grants nothing more.
    deliver(
        events,
        "invoice.paid",
        paid_invoice(organization, plans["Team"], reason="subscription_update"),
    )
    assert credits_of(organization) == 200
    # Upgrading again to the same plan is refused, not granted twice.
    again = admin_client.post(
        reverse("billing:subscription_upgrade"), {"plan": plans["Team"].pk}, follow=True
    )
    assert b"is not an upgrade" in again.content
    assert credits_of(organization) == 200


def test_cancel_at_period_end_and_subscription_events_keep_status(
    admin_client, events, organization, plans, fake_stripe
):
    deliver(events, "invoice.paid", paid_invoice(organization, plans["Starter"]))
    admin_client.post(reverse("billing:subscription_cancel"))
    assert fake_stripe.calls_to("/v1/subscriptions/sub_1")[0].params == {
        "cancel_at_period_end": "true"
    }
    assert Subscription.objects.get().cancel_at_period_end
    deliver(events, "customer.subscription.deleted", {"id": "sub_1", "status": "canceled"})
    assert Subscription.objects.get().status == "canceled"
    page = admin_client.get(reverse("billing:overview")).content.decode()
    assert "Subscribe" in page  # no live subscription any more


def test_the_customer_portal_is_linked(admin_client, organization, plans, fake_stripe):
    response = admin_client.post(reverse("billing:customer_portal"))
    assert response["Location"] == "https://billing.stripe.test/p/1"
