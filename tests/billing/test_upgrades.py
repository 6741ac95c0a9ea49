"""Plan changes worth what they cost, driven end to end: the admin's Upgrade button (the
real view, service and Stripe SDK), the customer portal's changes and renewals made by the
fake Stripe's subscription model (tests/billing/fake_stripe.py: prorations, the customer
balance, pending updates, Stripe's idempotency), and every event Stripe then sends posted
signed to the real webhook in Stripe's order.

The rule under test (billing/subscriptions.py): each paid invoice grants at most what its
`amount_paid` buys at the rate of the plan it pays for, so the credits of a period never
exceed what was charged in it; an upgrade grants that, capped at the difference between the
plans' credits for the part of the period left; a downgrade grants nothing; the balance a
downgrade leaves buys nothing again."""

import datetime as dt
import itertools
import math
from fractions import Fraction

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Membership
from billing.models import StripeEvent, Subscription, SubscriptionInvoice, SubscriptionPlan
from credits import selectors
from credits.audit import ledger_audit
from tests.accounts.factories import OrganizationFactory, member
from tests.billing.delivery import deliver, post_event
from tests.billing.fake_stripe import SubscriptionModel

pytestmark = pytest.mark.django_db

START = dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC)
PERIOD = 30 * 86400
UPGRADE = reverse("billing:subscription_upgrade")
_journeys = itertools.count(1)


@pytest.fixture
def plans(prices):
    """The monthly plans by rank (Starter 50 credits for $450, Team 200 for $1,700,
    Business 500 for $4,000), with Stripe price ids."""
    for plan in SubscriptionPlan.objects.all():
        plan.stripe_price_id = f"price_{plan.currency}_{plan.interval}_{plan.rank}".lower()
        plan.save()
    return {p.rank: p for p in SubscriptionPlan.objects.filter(interval="month", currency="USD")}


class Journey:
    """One organization's subscription, its admin and what Stripe did for it."""

    def __init__(self, fake, events, plans):
        n = next(_journeys)
        self.fake, self.events, self.plans = fake, events, plans
        self.organization = OrganizationFactory(slug=f"upgrades-{n}", name=f"Upgrades {n}")
        self.admin = member(
            self.organization, Membership.Role.ADMIN, email=f"admin{n}@upgrades.test"
        )
        self.client = Client()
        self.sub_id = f"sub_journey_{n}"
        self.event_ids: list[str] = []
        fake.idempotent = True
        fake.model = model = SubscriptionModel(fake)
        for plan in SubscriptionPlan.objects.exclude(stripe_price_id=""):
            model.prices[plan.stripe_price_id] = (plan.price_minor, plan.currency)
        self.model = model

    def subscribe(self, plan):
        metadata = {"organization_id": str(self.organization.pk), "plan_id": str(plan.pk)}
        self.model.subscription_start(
            self.sub_id,
            customer=f"cus_{self.sub_id}",
            price=plan.stripe_price_id,
            metadata=metadata,
            length=PERIOD,
        )
        self.flush()

    def flush(self):
        """Post what Stripe sent since, in its order; the webhook always answers 200."""
        for type_, obj, created in self.model.take_events():
            event = self.events.event(type_, obj, created=created)
            self.event_ids.append(event["id"])
            response = post_event(self.events, event)
            assert response.status_code == 200, response.content

    def upgrade(self, plan, *, pay=True) -> str:
        """The admin's Upgrade button; the page the admin lands on."""
        self.client.force_login(self.admin)  # signed in now, whatever time it is
        response = self.client.post(UPGRADE, {"plan": plan.pk}, follow=True)
        assert response.status_code == 200
        self.flush()
        pending = self.model.subscriptions[self.sub_id]["pending"]
        if pay and pending:
            self.model.pay(pending["invoice"])  # the card on file is charged
            self.flush()
        return response.content.decode()

    def portal_change(self, plan):
        self.model.portal_change(self.sub_id, plan.stripe_price_id)
        self.flush()

    def renew(self, traveller):
        traveller.move_to(dt.datetime.fromtimestamp(self.period_end, tz=dt.UTC))
        self.model.renew(self.sub_id)
        self.flush()

    @property
    def period_end(self) -> int:
        return self.model.subscriptions[self.sub_id]["end"]

    @property
    def stripe_plan(self):
        price = self.model.subscriptions[self.sub_id]["price"]
        return SubscriptionPlan.objects.get(stripe_price_id=price)

    def credits(self) -> int:
        return selectors.organization_balance(organization=self.organization).total

    def paid_invoices(self):
        """(invoice, plan it pays for, credits it granted) for each invoice Stripe was paid."""
        for invoice in self.model.invoices.values():
            if invoice["status"] != "paid":
                continue
            charged = max(invoice["lines"]["data"], key=lambda line: line["amount"])
            price = charged["pricing"]["price_details"]["price"]
            plan = SubscriptionPlan.objects.get(stripe_price_id=price)
            row = SubscriptionInvoice.objects.filter(invoice_id=invoice["id"]).first()
            yield invoice, plan, row.lot.quantity if row and row.lot else 0

    def assert_credits_paid_for(self):
        """Per invoice and per period, no credit that was not paid for."""
        best_rate = max(Fraction(p.credits_per_period, p.price_minor) for p in self.plans.values())
        per_period: dict[int, list] = {}
        for invoice, plan, granted in self.paid_invoices():
            paid = invoice["amount_paid"]
            assert granted <= paid * plan.credits_per_period // plan.price_minor, invoice
            end = invoice["lines"]["data"][0]["period"]["end"]
            per_period.setdefault(end, []).append((paid, granted))
        for entries in per_period.values():
            paid = sum(paid for paid, _ in entries)
            granted = sum(granted for _, granted in entries)
            assert granted <= math.floor(paid * best_rate), entries
        assert self.credits() == sum(granted for _, _, granted in self.paid_invoices())
        failed = StripeEvent.objects.filter(event_id__in=self.event_ids).exclude(
            status=StripeEvent.Status.PROCESSED
        )
        assert not failed.exists(), list(failed.values_list("type", "last_error"))
        report = ledger_audit()
        assert report.ok, report.violations


def _expected_change_credits(invoice, new, old, period_start, period_end) -> int:
    """What a plan change is worth, worked out from Stripe's invoice alone."""
    charged = max(invoice["lines"]["data"], key=lambda line: line["amount"])
    left = Fraction(period_end - charged["period"]["start"], period_end - period_start)
    by_money = invoice["amount_paid"] * new.credits_per_period // new.price_minor
    by_difference = math.floor(max(new.credits_per_period - old.credits_per_period, 0) * left)
    return min(by_money, by_difference)


# --- The figures of the issue ----------------------------------------------------------------


def test_an_upgrade_with_1_7_percent_of_the_period_left_grants_what_its_20_83_buy(
    fake_stripe, events, plans
):
    starter, team = plans[1], plans[2]
    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(starter)
        assert journey.credits() == 50
        traveller.move_to(START + dt.timedelta(seconds=PERIOD - PERIOD // 60))  # 1/60 left
        page = journey.upgrade(team)
    assert "Upgrade to Team requested" in page
    proration = list(journey.model.invoices.values())[-1]
    assert proration["amount_paid"] == 2_083  # $28.33 of Team less $7.50 of Starter unused
    # $20.83 at Team's $8.50 a credit: 2 credits (the old code granted the whole 150).
    assert journey.credits() == 50 + 2
    assert Subscription.objects.get(organization=journey.organization).plan == team
    journey.assert_credits_paid_for()


def test_a_downgrade_and_upgrades_again_grant_nothing_twice_and_a_third_change_goes_through(
    fake_stripe, events, plans
):
    starter, team = plans[1], plans[2]
    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(starter)
        traveller.move_to(START + dt.timedelta(seconds=PERIOD - PERIOD // 60))
        journey.upgrade(team)
        assert journey.credits() == 52
        for _ in range(2):
            traveller.shift(60)
            journey.portal_change(starter)  # about $20.83 credited to the customer balance
            assert journey.model.balances[f"cus_{journey.sub_id}"] < -2_000
            traveller.shift(60)
            page = journey.upgrade(team)  # paid from that balance: nothing charged
            assert list(journey.model.invoices.values())[-1]["amount_paid"] == 0
            assert "Upgrade to Team requested" in page
            assert journey.stripe_plan == team  # Stripe did make the change
            assert journey.credits() == 52  # not 650: nothing was paid for more
        traveller.shift(60)
        journey.portal_change(starter)
        page = journey.upgrade(plans[3])  # a third change, to Business this time
        assert "Upgrade to Business requested" in page and journey.stripe_plan == plans[3]
    posts = [c for c in fake_stripe.calls_to(f"/v1/subscriptions/{journey.sub_id}")]
    keys = [c.idempotency_key for c in posts if c.method == "POST"]
    assert len(keys) == 4 and len(set(keys)) == 4
    journey.assert_credits_paid_for()


def test_an_upgrade_asked_again_while_its_events_are_late_is_sent_as_a_new_change(
    fake_stripe, events, plans
):
    # Stripe does not promise an order: here every customer.subscription.updated event comes
    # late, after the invoices, so the recorded subscription state never moves between the
    # upgrade, the portal's downgrade and the upgrade asked again. The second upgrade is a
    # new change all the same (a key made of that state sent the first one's again, and
    # Stripe answered it with the first reply: nothing changed).
    starter, team = plans[1], plans[2]
    late = []

    def flush_invoices_only():
        late.extend(e for e in journey.model.outbox if e[0] == "customer.subscription.updated")
        journey.model.outbox = [e for e in journey.model.outbox if e not in late]
        journey.flush()

    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(starter)
        traveller.shift(86_400)
        journey.client.force_login(journey.admin)
        journey.client.post(UPGRADE, {"plan": team.pk})
        flush_invoices_only()
        journey.model.pay(journey.model.subscriptions[journey.sub_id]["pending"]["invoice"])
        flush_invoices_only()
        traveller.shift(60)
        journey.model.portal_change(journey.sub_id, starter.stripe_price_id)
        flush_invoices_only()
        traveller.shift(60)
        page = journey.client.post(UPGRADE, {"plan": team.pk}, follow=True).content.decode()
        flush_invoices_only()
        assert "Upgrade to Team requested" in page
        assert journey.stripe_plan == team
        journey.model.outbox[:0] = late
        journey.flush()
    assert Subscription.objects.get(organization=journey.organization).plan == team
    journey.assert_credits_paid_for()


def test_a_renewal_paid_from_a_downgrades_balance_buys_no_credits_again(fake_stripe, events, plans):
    starter, team = plans[1], plans[2]
    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(team)
        assert journey.credits() == 200
        traveller.move_to(START + dt.timedelta(seconds=PERIOD // 2))
        journey.portal_change(starter)
        # Half of Team unused ($850) less half of Starter ($225): $625 to the balance, and
        # the 200 credits stay.
        assert journey.model.balances[f"cus_{journey.sub_id}"] == -62_500
        assert journey.credits() == 200
        journey.renew(traveller)  # Starter's $450, all from the balance
        assert journey.credits() == 200
        journey.renew(traveller)  # $175 left in the balance, $275 charged: 30 credits
        assert journey.credits() == 200 + 30
        journey.renew(traveller)  # all charged again
        assert journey.credits() == 200 + 30 + 50
    journey.assert_credits_paid_for()


# --- Property: any sequence of changes --------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(1, PERIOD)),
        st.tuples(st.just("upgrade"), st.integers(1, 3)),
        st.tuples(st.just("double_click"), st.integers(1, 3)),
        st.tuples(st.just("portal"), st.integers(1, 3)),
        st.tuples(st.just("renew"), st.just(0)),
    ),
    max_size=10,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=st.integers(1, 3), steps=steps)
def test_no_sequence_of_upgrades_downgrades_and_renewals_grants_credits_not_paid_for(
    fake_stripe, events, plans, first, steps
):
    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(plans[first])
        for action, value in steps:
            current = journey.stripe_plan
            if action == "wait":
                # Within the period (a renewal is a step of its own).
                now = int(dt.datetime.now(dt.UTC).timestamp())
                traveller.shift(min(value, journey.period_end - now - 1))
            elif action == "renew":
                journey.renew(traveller)
            elif action == "portal" and value != current.rank:
                journey.portal_change(plans[value])
            elif action in ("upgrade", "double_click"):
                posts = len(fake_stripe.calls_to(f"/v1/subscriptions/{journey.sub_id}"))
                if action == "double_click":
                    journey.upgrade(plans[value], pay=False)
                page = journey.upgrade(plans[value])
                sent = len(fake_stripe.calls_to(f"/v1/subscriptions/{journey.sub_id}")) - posts
                if value > current.rank:
                    assert sent == 1 and journey.stripe_plan == plans[value], page
                else:
                    assert sent == 0 and "is not an upgrade" in page
        journey.assert_credits_paid_for()
        _assert_each_change_worth_what_it_cost(journey)


def _assert_each_change_worth_what_it_cost(journey):
    """Each paid invoice grants exactly its worth: a fully paid period its plan's credits,
    a change what its payment buys, capped at the credits difference for the time left."""
    period_start = None
    for invoice, plan, granted in journey.paid_invoices():
        lines = invoice["lines"]["data"]
        if invoice["billing_reason"] == "subscription_update":
            credited = min(lines, key=lambda line: line["amount"])
            old = SubscriptionPlan.objects.get(
                stripe_price_id=credited["pricing"]["price_details"]["price"]
            )
            end = lines[0]["period"]["end"]
            expected = _expected_change_credits(invoice, plan, old, period_start, end)
        else:
            period_start = lines[0]["period"]["start"]
            paid = invoice["amount_paid"]
            expected = min(
                plan.credits_per_period, paid * plan.credits_per_period // plan.price_minor
            )
        assert granted == expected, (invoice, granted, expected)


# --- Currencies -------------------------------------------------------------------------------


@pytest.fixture
def euro_team(plans):
    return SubscriptionPlan.objects.create(
        name="Team",
        interval="month",
        rank=2,
        currency="EUR",
        credits_per_period=200,
        price_minor=160_000,
        stripe_price_id="price_eur_month_2",
    )


def test_an_upgrade_to_a_plan_in_another_currency_is_refused_before_stripe(
    fake_stripe, events, plans, euro_team
):
    with time_machine.travel(START, tick=False):
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(plans[1])
        page = journey.upgrade(euro_team)
    assert "is billed in EUR, your subscription in USD" in page
    assert not [c for c in fake_stripe.calls if c.method == "POST" and "subscriptions" in c.path]
    assert journey.credits() == 50
    assert Subscription.objects.get(organization=journey.organization).pending_plan is None


def test_a_paid_change_onto_a_plan_in_another_currency_grants_nothing(
    fake_stripe, events, plans, euro_team
):
    # Made in Stripe's dashboard, say: the webhook still refuses to grant for it.
    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(plans[1])
        traveller.shift(86_400)
        journey.portal_change(euro_team)
    assert journey.credits() == 50
    failed = StripeEvent.objects.get(type="invoice.paid", status=StripeEvent.Status.FAILED)
    assert "keeps its currency" in failed.last_error
    assert not SubscriptionInvoice.objects.filter(lot__isnull=False, currency="EUR").exists()


# --- Repeated requests ------------------------------------------------------------------------


def test_a_double_click_sends_one_change_and_a_second_tab_is_told_to_wait(
    fake_stripe, events, plans
):
    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(plans[1])
        traveller.shift(86_400)
        first = journey.upgrade(plans[2], pay=False)
        again = journey.upgrade(plans[2], pay=False)  # the same button, clicked twice
        other = journey.upgrade(plans[3], pay=False)  # another tab, another plan
    assert "Upgrade to Team requested" in first and "Upgrade to Team requested" in again
    assert "An upgrade to Team (monthly) is waiting for its payment" in other
    posts = [
        c for c in fake_stripe.calls_to(f"/v1/subscriptions/{journey.sub_id}") if c.method == "POST"
    ]
    assert len(posts) == 1 and posts[0].params["items[0][price]"] == plans[2].stripe_price_id


def test_a_change_stripe_refused_can_be_asked_again(fake_stripe, events, plans):
    with time_machine.travel(START, tick=False) as traveller:
        journey = Journey(fake_stripe, events, plans)
        journey.subscribe(plans[1])
        traveller.shift(86_400)
        fake_stripe.refuse_next[f"/v1/subscriptions/{journey.sub_id}"] = 1
        refused = journey.upgrade(plans[2])
        assert "Stripe did not confirm the change." in refused
        assert Subscription.objects.get(organization=journey.organization).pending_plan is None
        journey.upgrade(plans[2])
    assert journey.stripe_plan == plans[2]
    proration = list(journey.model.invoices.values())[-1]
    start = int(START.timestamp())
    worth = _expected_change_credits(proration, plans[2], plans[1], start, start + PERIOD)
    assert worth > 0 and journey.credits() == 50 + worth


# --- A second paid invoice of one period (item 9) ----------------------------------------------


def _period_invoice(journey, plan, invoice_id):
    metadata = {"organization_id": str(journey.organization.pk), "plan_id": str(plan.pk)}
    start = int(START.timestamp())
    return {
        "id": invoice_id,
        "object": "invoice",
        "billing_reason": "subscription_cycle",
        "currency": "usd",
        "amount_paid": plan.price_minor,
        "parent": {"subscription_details": {"subscription": journey.sub_id, "metadata": metadata}},
        "status_transitions": {"paid_at": start + 60},
        "lines": {
            "data": [
                {
                    "amount": plan.price_minor,
                    "pricing": {"price_details": {"price": plan.stripe_price_id}},
                    "period": {"start": start, "end": start + PERIOD},
                }
            ]
        },
    }


@pytest.mark.parametrize(
    "order", sorted(set(itertools.permutations(["first", "second", "first", "second"])))
)
def test_a_second_paid_invoice_of_a_period_grants_once_in_any_order(
    fake_stripe, events, plans, order
):
    team = plans[2]
    with time_machine.travel(START + dt.timedelta(minutes=2), tick=False):
        journey = Journey(fake_stripe, events, plans)
        invoices = {
            name: _period_invoice(journey, team, f"in_{name}_{journey.sub_id}")
            for name in ("first", "second")
        }
        for name in order:  # each delivery an event of its own, as a resent invoice.paid
            response = deliver(events, "invoice.paid", invoices[name])
            assert response.status_code == 200
    assert journey.credits() == 200
    rows = SubscriptionInvoice.objects.filter(subscription__organization=journey.organization)
    assert sorted(row.lot is not None for row in rows) == [False, True]
    assert not StripeEvent.objects.exclude(status=StripeEvent.Status.PROCESSED).exists()
