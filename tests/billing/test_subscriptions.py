"""Subscriptions driven by the events Stripe sends, in the order Stripe sends them: for a
Checkout subscription paid at once, `customer.subscription.created` (already active, with
the subscription's metadata) comes first, then `invoice.paid`, `invoice_payment.paid` and
`checkout.session.completed`. Nothing is patched into the database by hand."""

import time
import uuid

import pytest
from django.urls import reverse

from billing import simulated, subscriptions
from billing.errors import PurchaseRefused
from billing.models import Subscription, SubscriptionInvoice, SubscriptionPlan
from credits import selectors
from credits.audit import ledger_audit
from credits.models import Lot
from tests.billing.delivery import deliver, post_event
from tests.billing.fake_stripe import Events

pytestmark = pytest.mark.django_db

START = 1_790_000_000
MONTH = 30 * 86400


@pytest.fixture
def plans(prices):
    for plan in SubscriptionPlan.objects.all():
        plan.stripe_price_id = f"price_{plan.interval}_{plan.rank}"
        plan.save()
    return {p.name: p for p in SubscriptionPlan.objects.filter(interval="month")}


def metadata(organization, plan):
    return {"organization_id": str(organization.pk), "plan_id": str(plan.pk)}


def subscription(organization, plan, *, status="active", sub="sub_1", item="si_1", **fields):
    """A subscription object as customer.subscription.* events carry it."""
    return {
        "id": sub,
        "object": "subscription",
        "status": status,
        "metadata": metadata(organization, plan),
        "cancel_at_period_end": False,
        "pending_update": None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": item,
                    "object": "subscription_item",
                    "price": {"id": plan.stripe_price_id},
                    "current_period_start": START,
                    "current_period_end": START + MONTH,
                }
            ],
        },
        **fields,
    }


def paid_invoice(organization, plan, *, subscription="sub_1", start=START, reason=None, **extra):
    return {
        "id": f"in_{subscription}_{start}_{reason or 'cycle'}",
        "object": "invoice",
        "billing_reason": reason or "subscription_cycle",
        "currency": plan.currency.lower(),
        "amount_paid": plan.price_minor,
        "parent": {
            "subscription_details": {
                "subscription": subscription,
                "metadata": metadata(organization, plan),
            }
        },
        "status_transitions": {"paid_at": start + 60},
        "lines": {
            "data": [
                {
                    "amount": plan.price_minor,
                    "pricing": {"price_details": {"price": plan.stripe_price_id}},
                    "period": {"start": start, "end": start + MONTH},
                }
            ]
        },
        **extra,
    }


def proration_invoice(organization, old, new, *, amount_paid, invoice_id="in_upgrade_1"):
    """What Stripe invoices for an upgrade with proration_behavior=always_invoice: the unused
    time of the old price credited, the rest of the period at the new price charged."""
    half = START + MONTH // 2
    return {
        **paid_invoice(organization, old, reason="subscription_update"),
        "id": invoice_id,
        "amount_paid": amount_paid,
        "lines": {
            "data": [
                {
                    "amount": -old.price_minor // 2,
                    "pricing": {"price_details": {"price": old.stripe_price_id}},
                    "period": {"start": half, "end": START + MONTH},
                },
                {
                    "amount": new.price_minor // 2,
                    "pricing": {"price_details": {"price": new.stripe_price_id}},
                    "period": {"start": half, "end": START + MONTH},
                },
            ]
        },
    }


def subscribe_in_stripe_order(events, organization, plan, *, sub="sub_1", created=None):
    created = created or int(time.time())
    deliver(
        events,
        "customer.subscription.created",
        subscription(organization, plan, sub=sub),
        created=created,
    )
    invoice = paid_invoice(organization, plan, subscription=sub, reason="subscription_create")
    deliver(events, "invoice.paid", invoice, created=created)
    deliver(
        events,
        "invoice_payment.paid",
        {
            "id": f"inpay_{sub}",
            "object": "invoice_payment",
            "invoice": invoice["id"],
            "payment": {"type": "payment_intent", "payment_intent": f"pi_{sub}_1"},
            "status": "paid",
        },
        created=created,
    )
    deliver(
        events,
        "checkout.session.completed",
        {
            "id": f"cs_{sub}",
            "object": "checkout.session",
            "mode": "subscription",
            "subscription": sub,
            "metadata": metadata(organization, plan),
        },
        created=created,
    )
    return invoice


def credits_of(organization):
    return selectors.organization_balance(organization=organization).total


def assert_audit_clean():
    report = ledger_audit()
    assert report.ok, report.violations


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


def test_stripes_own_order_records_the_subscription_its_item_and_its_credits(
    events, organization, plans
):
    subscribe_in_stripe_order(events, organization, plans["Starter"])
    record = Subscription.objects.get()
    assert (record.status, record.plan, record.stripe_item_id) == (
        "active",
        plans["Starter"],
        "si_1",
    )
    assert credits_of(organization) == 50
    assert SubscriptionInvoice.objects.get().payment_reference == "pi_sub_1_1"


def test_each_paid_period_grants_the_plan_credits_once(events, organization, plans):
    invoice = paid_invoice(organization, plans["Team"], reason="subscription_create")
    for _ in range(3):  # redelivered under new event ids too
        deliver(events, "invoice.paid", invoice)
    assert credits_of(organization) == 200
    next_period = paid_invoice(organization, plans["Team"], start=START + MONTH)
    deliver(events, "invoice.paid", next_period)
    assert credits_of(organization) == 400
    assert Lot.objects.filter(source="subscription").count() == 2
    assert Subscription.objects.get().status == "active"


def test_a_second_paid_invoice_of_the_same_period_grants_nothing_more(events, organization, plans):
    deliver(events, "invoice.paid", paid_invoice(organization, plans["Team"]))
    again = {**paid_invoice(organization, plans["Team"]), "id": "in_second_of_period"}
    response = deliver(events, "invoice.paid", again)
    assert response.status_code == 200
    assert credits_of(organization) == 200
    second = SubscriptionInvoice.objects.get(invoice_id="in_second_of_period")
    assert second.lot is None and "already granted" in second.note


def test_an_invoice_paid_before_the_checkout_event_still_grants(events, organization, plans):
    deliver(events, "invoice.paid", paid_invoice(organization, plans["Starter"]))
    deliver(
        events,
        "checkout.session.completed",
        {
            "id": "cs_1",
            "mode": "subscription",
            "subscription": "sub_1",
            "metadata": metadata(organization, plans["Starter"]),
        },
    )
    assert credits_of(organization) == 50
    assert Subscription.objects.get().plan == plans["Starter"]


def test_an_upgrade_is_granted_only_when_its_proration_invoice_is_paid(
    admin_client, events, organization, plans, fake_stripe
):
    starter, team = plans["Starter"], plans["Team"]
    subscribe_in_stripe_order(events, organization, starter)
    response = admin_client.post(
        reverse("billing:subscription_upgrade"), {"plan": team.pk}, follow=True
    )
    page = response.content.decode()
    assert "Upgrade to Team requested" in page and 'data-testid="upgrade-pending"' in page
    update = fake_stripe.calls_to("/v1/subscriptions/sub_1")[0]
    # The item id comes from the subscription's own event, not from a test.
    assert update.params["items[0][id]"] == "si_1"
    assert update.params["items[0][price]"] == "price_month_2"
    assert update.params["proration_behavior"] == "always_invoice"
    assert update.params["payment_behavior"] == "pending_if_incomplete"
    assert not any(name.startswith("metadata") for name in update.params)
    assert credits_of(organization) == 50  # nothing before the payment
    assert Subscription.objects.get().plan == starter

    # Half the period left: Stripe charges half of the difference in price, $625.00, which
    # buys 73 credits at Team's rate of $8.50 (rounded down; the difference would be 75).
    invoice = proration_invoice(organization, starter, team, amount_paid=62_500)
    for _ in range(2):
        deliver(events, "invoice.paid", invoice)
    assert credits_of(organization) == 50 + 73
    deliver(
        events,
        "customer.subscription.updated",
        subscription(organization, team),
        created=int(time.time()) + 1,
    )
    record = Subscription.objects.get()
    assert (record.plan, record.pending_plan) == (team, None)
    again = admin_client.post(
        reverse("billing:subscription_upgrade"), {"plan": team.pk}, follow=True
    )
    assert b"is not an upgrade" in again.content
    assert credits_of(organization) == 50 + 73
    assert_audit_clean()


def test_an_upgrade_asks_stripe_for_the_item_no_event_named(
    admin_client, events, organization, plans, fake_stripe
):
    # Only the invoice came (the subscription events are still on their way).
    deliver(events, "invoice.paid", paid_invoice(organization, plans["Starter"]))
    fake_stripe.subscriptions["sub_1"] = subscription(organization, plans["Starter"], item="si_9")
    admin_client.post(reverse("billing:subscription_upgrade"), {"plan": plans["Team"].pk})
    retrieve, update = fake_stripe.calls_to("/v1/subscriptions/sub_1")
    assert retrieve.method == "GET"
    assert update.params["items[0][id]"] == "si_9"
    assert Subscription.objects.get().stripe_item_id == "si_9"


def test_an_unpaid_proration_grants_nothing_and_the_pending_upgrade_lapses(
    admin_client, events, organization, plans, fake_stripe
):
    starter, team = plans["Starter"], plans["Team"]
    subscribe_in_stripe_order(events, organization, starter)
    admin_client.post(reverse("billing:subscription_upgrade"), {"plan": team.pk})
    unpaid = {
        **proration_invoice(organization, starter, team, amount_paid=0),
        "status": "open",
        "attempt_count": 1,
    }
    deliver(events, "invoice.payment_failed", unpaid)
    # Stripe drops the pending update after 23 hours: the item keeps its old price.
    deliver(
        events,
        "customer.subscription.updated",
        subscription(organization, starter),
        created=int(time.time()) + 86_400,
    )
    record = Subscription.objects.get()
    assert (record.plan, record.pending_plan) == (starter, None)
    assert credits_of(organization) == 50


def test_cancelled_stays_cancelled_and_the_organization_can_subscribe_again(
    admin_client, events, organization, plans, fake_stripe
):
    now = int(time.time())
    first = subscribe_in_stripe_order(events, organization, plans["Starter"], created=now - 60)
    admin_client.post(reverse("billing:subscription_cancel"))
    assert fake_stripe.calls_to("/v1/subscriptions/sub_1")[0].params == {
        "cancel_at_period_end": "true"
    }
    assert Subscription.objects.get().cancel_at_period_end
    ended = subscription(organization, plans["Starter"], status="canceled")
    deliver(events, "customer.subscription.deleted", ended, created=now)
    # Late: an invoice.paid and a subscription update from before the deletion.
    deliver(events, "invoice.paid", first, created=now - 60)
    deliver(events, "customer.subscription.updated", subscription(organization, plans["Starter"]),
            created=now - 30)  # fmt: skip
    assert Subscription.objects.get().status == "canceled"
    assert credits_of(organization) == 50
    page = admin_client.get(reverse("billing:overview")).content.decode()
    assert "Subscribe" in page  # no live subscription any more
    response = admin_client.post(
        reverse("billing:subscribe"),
        {"plan": plans["Team"].pk, "request_token": str(uuid.uuid4())},
    )
    assert response["Location"].startswith("https://checkout.stripe.test/")
    subscribe_in_stripe_order(events, organization, plans["Team"], sub="sub_2")
    assert Subscription.objects.get(stripe_subscription_id="sub_2").status == "active"
    assert credits_of(organization) == 250


def test_an_older_subscription_event_changes_nothing(events, organization, plans):
    now = int(time.time())
    deliver(
        events,
        "customer.subscription.updated",
        subscription(organization, plans["Starter"], status="past_due"),
        created=now,
    )
    deliver(
        events,
        "customer.subscription.created",
        subscription(organization, plans["Starter"], status="incomplete"),
        created=now - 5,
    )
    record = Subscription.objects.get()
    assert record.status == "past_due"
    assert record.state_as_of.timestamp() == now


def test_a_refund_of_a_subscription_invoice_revokes_from_its_periods_lot(
    events, organization, plans
):
    team = plans["Team"]
    refund = {
        "id": "ch_sub",
        "object": "charge",
        "amount": team.price_minor,
        "amount_refunded": team.price_minor // 4,
        "currency": "usd",
        "payment_intent": "pi_sub_1_1",
    }
    # The refund arrives before anything else: it is parked, then applied.
    deliver(events, "charge.refunded", refund)
    subscribe_in_stripe_order(events, organization, team)
    deliver(events, "invoice.paid", paid_invoice(organization, team, start=START + MONTH))
    assert credits_of(organization) == 150 + 200  # a quarter of the first period's lot
    first = SubscriptionInvoice.objects.get(billing_reason="subscription_create")
    assert first.status == "partially_refunded"
    assert first.lot.holdings.get().quantity == 150
    assert_audit_clean()


def test_the_customer_portal_is_linked(admin_client, organization, plans, fake_stripe):
    response = admin_client.post(reverse("billing:customer_portal"))
    assert response["Location"] == "https://billing.stripe.test/p/1"


def test_the_simulated_checkout_subscribes_and_upgrades_through_the_webhook(
    admin_client, organization, prices, settings, monkeypatch
):
    settings.DEBUG, settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = True, "", ""
    signed = Events(secret=simulated.stripe_gateway.webhook_secret())
    monkeypatch.setattr(simulated, "_post_signed", lambda request, event: post_event(signed, event))
    starter = SubscriptionPlan.objects.get(interval="month", rank=1)
    team = SubscriptionPlan.objects.get(interval="month", rank=2)
    checkout = admin_client.post(
        reverse("billing:subscribe"), {"plan": starter.pk, "request_token": str(uuid.uuid4())}
    )
    admin_client.post(checkout["Location"], {"action": "pay"})
    assert credits_of(organization) == 50
    response = admin_client.post(
        reverse("billing:subscription_upgrade"), {"plan": team.pk}, follow=True
    )
    assert b"Upgraded to Team (monthly) (simulated payment)" in response.content
    # The whole difference in price, $1,250.00, at Team's rate: 147 credits (not 150).
    assert credits_of(organization) == 50 + 147
    record = Subscription.objects.get()
    assert (record.plan, record.pending_plan) == (team, None)


def _subscription_posts(fake_stripe) -> list[str]:
    return [
        call.idempotency_key
        for call in fake_stripe.calls_to("/v1/subscriptions/sub_1")
        if call.method == "POST"
    ]


def test_an_upgrade_asked_again_after_a_portal_downgrade_is_a_new_request(
    admin_client, events, organization, plans, fake_stripe
):
    starter, team = plans["Starter"], plans["Team"]
    subscribe_in_stripe_order(events, organization, starter)
    admin_client.post(reverse("billing:subscription_upgrade"), {"plan": team.pk})
    deliver(
        events, "invoice.paid", proration_invoice(organization, starter, team, amount_paid=62_500)
    )
    now = int(time.time())
    deliver(
        events, "customer.subscription.updated", subscription(organization, team), created=now + 1
    )
    deliver(
        events,
        "customer.subscription.updated",
        subscription(organization, starter),
        created=now + 2,
    )
    admin_client.post(reverse("billing:subscription_upgrade"), {"plan": team.pk})
    keys = _subscription_posts(fake_stripe)
    assert len(keys) == 2 and len(set(keys)) == 2  # Stripe would replay a reused key


def test_a_cancel_asked_again_after_renewing_in_the_portal_is_a_new_request(
    admin_client, events, organization, plans, fake_stripe
):
    subscribe_in_stripe_order(events, organization, plans["Starter"])
    admin_client.post(reverse("billing:subscription_cancel"))
    renewed = subscription(organization, plans["Starter"], cancel_at_period_end=False)
    deliver(events, "customer.subscription.updated", renewed, created=int(time.time()) + 5)
    assert not Subscription.objects.get().cancel_at_period_end
    admin_client.post(reverse("billing:subscription_cancel"))
    keys = _subscription_posts(fake_stripe)
    assert len(keys) == 2 and len(set(keys)) == 2


def test_no_second_subscription_starts_beside_one_whose_first_payment_is_incomplete(
    events, organization, plans, fake_stripe
):
    first = subscription(organization, plans["Starter"], status="incomplete")
    deliver(events, "customer.subscription.created", first)
    with pytest.raises(PurchaseRefused, match="first payment is not complete"):
        subscriptions.subscription_start(
            organization=organization, plan=plans["Team"], request_token="second-tab"
        )
