"""Stripe's events for many payments of one organization, each delivered five times, all
shuffled and posted from several threads at once: the credits end where the truth says, the
ledger's audit is clean, and nothing fails. And Confirm users racing webhook fulfilment for
the same organization: no deadlock, no 5xx."""

import random
import time
from collections import Counter

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import Purchase, StripeEvent, Subscription, SubscriptionPlan
from credits import selectors
from credits.audit import ledger_audit
from tests.billing.delivery import post_event
from tests.billing.objects import buy, charge, dispute, payment_intent, session
from tests.credits.factories import grant
from tests.support.threads import run_threads
from tests.training.factories import confirm_form, plan_with
from training.models import TrainingPlan

MONTH = 30 * 86400


def _sub_objects(organization, plan, *, t0: int):
    """A Starter subscription in Stripe's order, a second paid invoice of its second period,
    half of its first period refunded, then deleted; and a late invoice.paid."""
    meta = {"organization_id": str(organization.pk), "plan_id": str(plan.pk)}
    item = {"id": "si_s", "price": {"id": plan.stripe_price_id}}

    def subscription(status):
        return {
            "id": "sub_s",
            "object": "subscription",
            "status": status,
            "metadata": meta,
            "items": {"data": [item]},
            "current_period_start": t0,
            "current_period_end": t0 + MONTH,
        }

    def invoice(invoice_id, reason, start):
        return {
            "id": invoice_id,
            "object": "invoice",
            "billing_reason": reason,
            "currency": "usd",
            "amount_paid": plan.price_minor,
            "parent": {"subscription_details": {"subscription": "sub_s", "metadata": meta}},
            "status_transitions": {"paid_at": start},
            "lines": {
                "data": [
                    {
                        "amount": plan.price_minor,
                        "pricing": {"price_details": {"price": plan.stripe_price_id}},
                        "period": {"start": start, "end": start + MONTH},
                    }
                ]
            },
        }

    def paid_with(invoice_id, pi):
        return {
            "id": f"inpay_{invoice_id}",
            "object": "invoice_payment",
            "invoice": invoice_id,
            "payment": {"type": "payment_intent", "payment_intent": pi},
        }

    first = invoice("in_s1", "subscription_create", t0)
    refund = {
        "id": "ch_s1",
        "object": "charge",
        "amount": plan.price_minor,
        "amount_refunded": plan.price_minor // 2,
        "currency": "usd",
        "payment_intent": "pi_s1",
    }
    checkout = {"id": "cs_s", "mode": "subscription", "subscription": "sub_s", "metadata": meta}
    return [
        ("customer.subscription.created", subscription("active"), t0),
        ("invoice.paid", first, t0),
        ("invoice_payment.paid", paid_with("in_s1", "pi_s1"), t0),
        ("checkout.session.completed", checkout, t0),
        ("invoice.paid", invoice("in_s2", "subscription_cycle", t0 + MONTH), t0 + 100),
        ("invoice_payment.paid", paid_with("in_s2", "pi_s2"), t0 + 100),
        ("invoice.paid", invoice("in_s2_again", "subscription_cycle", t0 + MONTH), t0 + 110),
        ("charge.refunded", refund, t0 + 200),
        ("customer.subscription.deleted", subscription("canceled"), t0 + 300),
        ("invoice.paid", first, t0),  # late, under an id of its own
    ]


@pytest.mark.django_db(transaction=True)
# "reversed": every refund and dispute before its payment, the deletion before the
# subscription's creation; the seeds: three shuffles.
@pytest.mark.parametrize("order", ["reversed", 1, 2, 3])
def test_every_event_five_times_shuffled_from_8_threads_ends_at_the_truth(
    order, events, admin_client, organization, prices, fake_stripe
):
    for plan in SubscriptionPlan.objects.all():
        plan.stripe_price_id = f"price_{plan.interval}_{plan.rank}"
        plan.save()
    starter = SubscriptionPlan.objects.get(interval="month", rank=1)
    a, b, c, d, e = (buy(admin_client, 100) for _ in range(5))  # $1,000.00 each
    t0 = int(time.time()) - 3600
    objects = [
        # A: refunded $300, then $500 in all: half of its credits revoked.
        ("checkout.session.completed", session(a), t0),
        ("charge.refunded", charge(a, refunded=30_000), t0 + 10),
        ("charge.refunded", charge(a, refunded=50_000), t0 + 20),
        # B: disputed, then the dispute is won: everything back.
        ("checkout.session.completed", session(b), t0),
        ("charge.dispute.created", dispute(b), t0 + 10),
        ("charge.dispute.closed", dispute(b, status="won"), t0 + 20),
        # C: refunded in full.
        ("checkout.session.completed", session(c), t0),
        ("charge.refunded", charge(c, refunded=100_000), t0 + 10),
        # D: the session expired unpaid.
        ("checkout.session.expired", session(d, status="expired", payment_status="unpaid"), t0),
        # E: half of it disputed, and the dispute lost.
        ("checkout.session.completed", session(e), t0),
        ("charge.dispute.created", dispute(e, amount=50_000), t0 + 10),
        ("charge.dispute.closed", dispute(e, status="lost", amount=50_000), t0 + 20),
        *_sub_objects(organization, starter, t0=t0),
    ]
    stripe_events = [
        events.event(type_, obj, created=created, event_id=f"evt_storm_{n}")
        for n, (type_, obj, created) in enumerate(objects)
    ]
    deliveries = [event for event in stripe_events for _ in range(5)]
    if order == "reversed":
        deliveries.reverse()
    else:
        random.Random(order).shuffle(deliveries)
    threads = 8

    def worker(n: int) -> list[int]:
        client = Client()
        return [
            post_event(events, event, client=client).status_code for event in deliveries[n::threads]
        ]

    answers = Counter(code for codes in run_threads(threads, worker) for code in codes)
    assert answers == Counter({200: len(deliveries)})
    assert StripeEvent.objects.count() == len(stripe_events)
    failed = list(StripeEvent.objects.exclude(status="processed").values_list("type", "last_error"))
    assert failed == []
    # A 50 + B 100 + C 0 + D 0 + E 50; the subscription: half of period 1, all of period 2.
    assert (
        selectors.organization_balance(organization=organization).total == 50 + 100 + 50 + 25 + 50
    )
    statuses = dict(Purchase.objects.values_list("pk", "status"))
    assert [statuses[p.pk] for p in (a, b, c, d, e)] == [
        "partially_refunded",
        "paid",
        "refunded",
        "cancelled",
        "disputed",
    ]
    assert Subscription.objects.get().status == "canceled"
    report = ledger_audit()
    assert report.ok, report.violations


@pytest.mark.django_db(transaction=True)
def test_confirm_users_and_webhook_fulfilment_16_threads_each_never_deadlock(
    events, admin, organization, prices, fake_stripe
):
    grant(organization, 1_000)
    admin_client = Client()
    admin_client.force_login(admin)
    purchases = [buy(admin_client, 10) for _ in range(16)]
    plans = [plan_with(organization, admin, emails=[f"p{n}@acme.test"]) for n in range(16)]
    forms = [confirm_form(plan) for plan in plans]

    def worker(n: int) -> int:
        # Odd threads deliver one purchase's paid session each; even ones confirm one plan.
        client = Client(raise_request_exception=False)
        if n % 2:
            paid = events.event(
                "checkout.session.completed", session(purchases[n // 2]), created=int(time.time())
            )
            return post_event(events, paid, client=client).status_code
        client.force_login(admin)
        plan = plans[n // 2]
        return client.post(reverse("training:confirm", args=[plan.pk]), forms[n // 2]).status_code

    codes = run_threads(32, worker)
    assert all(code < 500 for code in codes), Counter(codes)
    assert not StripeEvent.objects.exclude(status="processed").exists()
    assert all(p.status == "paid" for p in Purchase.objects.all())
    assert all(plan.status == "confirmed" for plan in TrainingPlan.objects.all())
    # 1,000 granted + 16 purchases of 10, less 16 seats of 1.
    assert selectors.organization_balance(organization=organization).total == 1_000 + 160 - 16
    report = ledger_audit()
    assert report.ok, report.violations
    assert {payment_intent(p) for p in Purchase.objects.all()} == {
        p.payment_intent_id for p in Purchase.objects.all()
    }
