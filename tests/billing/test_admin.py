"""Support's billing lists: Stripe's events, purchases, subscriptions and their invoices,
payments, disputes and overage invoices grow with every organization's history; each list
costs a page (no count, distinct or listing over a whole table)."""

import itertools
import uuid

import pytest
from django.utils import timezone

from billing.models import (
    Dispute,
    OverageInvoice,
    Payment,
    StripeCustomer,
    StripeEvent,
    Subscription,
    SubscriptionInvoice,
    SubscriptionPlan,
)
from tests.accounts.factories import UserFactory
from tests.billing.factories import PurchaseFactory
from tests.support.admin_lists import (
    assert_opens_filtered_or_not,
    large_table_models,
    open_list,
)

pytestmark = pytest.mark.django_db

_months = itertools.count()


@pytest.fixture
def support(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _billing_history(organization, n: int) -> None:
    """What Stripe's events leave behind, written directly: the lists are under test, not how
    the rows came to be."""
    plan, _ = SubscriptionPlan.objects.get_or_create(
        interval="month",
        rank=1,
        currency="USD",
        defaults={"name": "Team", "credits_per_period": 10, "price_minor": 1000},
    )
    StripeCustomer.objects.get_or_create(
        organization=organization, defaults={"customer_id": f"cus_{organization.pk}"}
    )
    subscription = Subscription.objects.create(
        organization=organization,
        plan=plan,
        pending_plan=plan,
        stripe_subscription_id=f"sub_{uuid.uuid4().hex}",
        status="active",
    )
    for _ in range(n):
        tag = uuid.uuid4().hex
        month = next(_months)
        PurchaseFactory(organization=organization)
        StripeEvent.objects.create(
            event_id=f"evt_{tag}", type="invoice.paid", payload={"id": tag}, created=timezone.now()
        )
        SubscriptionInvoice.objects.create(
            invoice_id=f"in_{tag}", subscription=subscription, billing_reason="subscription_cycle"
        )
        payment = Payment.objects.create(reference=f"pi_{tag}", currency="usd")
        Dispute.objects.create(
            dispute_id=f"dp_{tag}", payment=payment, amount_minor=100, currency="usd",
            status="needs_response",
        )  # fmt: skip
        OverageInvoice.objects.create(
            organization=organization,
            month=f"{2000 + month // 12}-{month % 12 + 1:02d}",
            quantity=1,
            amount_minor=100,
            currency="USD",
        )


@pytest.mark.parametrize("model", large_table_models("billing"), ids=lambda m: m.__name__)
def test_support_opens_each_billing_list_without_reading_whole_tables(
    support, organization, other_organization, model
):
    _billing_history(organization, 2)
    _billing_history(other_organization, 1)
    assert_opens_filtered_or_not(support, model, organization)


@pytest.mark.parametrize("model", large_table_models("billing"), ids=lambda m: m.__name__)
def test_a_billing_list_costs_the_same_queries_with_more_rows(support, organization, model):
    _billing_history(organization, 1)
    _, before = open_list(support, model)
    _billing_history(organization, 3)
    _, after = open_list(support, model)
    assert len(after) == len(before)


def test_the_event_list_offers_recent_types_and_loads_no_payload(support):
    for kind in ("invoice.paid", "charge.refunded", "invoice.paid"):
        StripeEvent.objects.create(event_id=f"evt_{uuid.uuid4().hex}", type=kind, payload={})
    response, queries = open_list(support, StripeEvent)
    cl = response.context["cl"]
    (types,) = [spec for spec in cl.filter_specs if getattr(spec, "parameter_name", "") == "type"]
    assert [choice["display"] for choice in types.choices(cl)] == [
        "All",
        "charge.refunded",
        "invoice.paid",
    ]
    listing = [sql for sql in queries if sql.startswith('SELECT "billing_stripeevent"."id"')]
    assert listing and all('"payload"' not in sql for sql in listing)
