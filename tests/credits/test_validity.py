"""Validity on the organization's calendar: a lot valid 365 days from its invoice date is
usable through the end of the 365th local day after it (docs/credit-model.md, *Lots*),
whatever the hour of the payment, DST or a leap day, and pages show that last usable day."""

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership
from billing.models import SubscriptionPlan
from credits import selectors, services
from credits.audit import ledger_audit
from tests.accounts.factories import OrganizationFactory, member
from tests.billing import conftest as billing_fixtures
from tests.billing.delivery import deliver
from tests.credits.factories import grant, key

pytestmark = pytest.mark.django_db

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
AUCKLAND = zoneinfo.ZoneInfo("Pacific/Auckland")


@pytest.fixture(autouse=True)
def _audit_after_each_test():
    yield
    report = ledger_audit()
    assert report.ok, report.violations


def local(zone, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone)


def purchase(organization, quantity: int, invoiced: dt.datetime):
    return services.lot_grant(
        organization=organization,
        quantity=quantity,
        source="purchase",
        invoice_date=invoiced,
        reference="",
        idempotency_key=key("purchase"),
    )


def usable(organization, at: dt.datetime) -> int:
    return selectors.organization_balance(organization=organization, now=at).total


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown_validity(client) -> list[str]:
    page = client.get(reverse("credits:overview")).content.decode()
    cells = page.split('data-testid="lot-usable-through">')[1:]
    return [cell.split("</td>")[0] for cell in cells]


def test_a_purchase_at_2330_in_standard_time_is_usable_through_the_same_date_a_year_on(
    organization, admin_client
):
    # 23:30 EST on the eve of the 2025 DST change; a year later New York is on EDT by then.
    # 365 times 24 hours would end at 00:30 EDT on Mar 9, 2026, a day too late on the page.
    lot = purchase(organization, 10, local(NEW_YORK, 2025, 3, 8, 23, 30))
    assert lot.expires_at == local(NEW_YORK, 2026, 3, 9, 0, 0)
    assert usable(organization, local(NEW_YORK, 2026, 3, 8, 23, 59)) == 10
    assert usable(organization, local(NEW_YORK, 2026, 3, 9, 0, 0)) == 0
    assert shown_validity(admin_client) == ["Mar 8, 2026"]


def test_the_hour_of_the_payment_never_moves_the_last_usable_day(organization):
    early = purchase(organization, 1, local(NEW_YORK, 2026, 11, 20, 0, 5))
    late = purchase(organization, 1, local(NEW_YORK, 2026, 11, 20, 23, 55))
    assert early.expires_at == late.expires_at == local(NEW_YORK, 2027, 11, 21, 0, 0)


def test_validity_counts_local_days_of_the_organization_not_utc_days(db):
    # 09:30 in Auckland on Mar 1 is still Feb 28 in UTC: the organization's day counts.
    organization = OrganizationFactory(time_zone="Pacific/Auckland")
    viewer = member(organization, Membership.Role.ADMIN, time_zone="Pacific/Auckland")
    lot = purchase(organization, 5, local(AUCKLAND, 2026, 3, 1, 9, 30))
    assert lot.expires_at == local(AUCKLAND, 2027, 3, 2, 0, 0)
    assert shown_validity(client_of(viewer)) == ["Mar 1, 2027"]


def test_a_lot_expiring_at_midnight_shows_the_day_before_as_its_last(organization, admin_client):
    grant(organization, 3, expires_at=local(NEW_YORK, 2030, 3, 2, 0, 0))
    assert shown_validity(admin_client) == ["Mar 1, 2030"]


def test_an_expiry_in_the_middle_of_a_day_shows_its_time(organization, admin_client):
    grant(organization, 3, expires_at=local(NEW_YORK, 2030, 3, 1, 23, 30))
    assert shown_validity(admin_client) == ["Mar 1, 2030, until 23:30 EST"]


def test_a_viewer_elsewhere_is_told_whose_calendar_the_day_is_on(organization):
    traveller = member(organization, Membership.Role.ADMIN, time_zone="Asia/Tokyo")
    grant(organization, 3, expires_at=local(NEW_YORK, 2030, 3, 2, 0, 0))
    assert shown_validity(client_of(traveller)) == ["Mar 1, 2030 (America/New_York)"]


@pytest.mark.parametrize(
    ("invoiced", "last_day"),
    [
        (dt.date(2027, 3, 1), dt.date(2028, 2, 29)),  # a leap day inside the year
        (dt.date(2028, 2, 29), dt.date(2029, 2, 28)),  # invoiced on the leap day
        (dt.date(2028, 2, 28), dt.date(2029, 2, 27)),
        (dt.date(2028, 3, 1), dt.date(2029, 3, 1)),
    ],
)
def test_365_days_across_leap_years_are_calendar_days(organization, invoiced, last_day):
    lot = purchase(organization, 1, local(NEW_YORK, *invoiced.timetuple()[:3], 12, 0))
    next_day = last_day + dt.timedelta(days=1)
    assert lot.expires_at == local(NEW_YORK, next_day.year, next_day.month, next_day.day)


def test_the_floor_keeps_a_lot_through_the_end_of_its_local_day(organization):
    lot = services.lot_grant(
        organization=organization,
        quantity=1,
        source="subscription",
        invoice_date=local(NEW_YORK, 2027, 3, 1, 7, 1),
        reference="in_floor",
        idempotency_key="floor",
        expires_not_before=local(NEW_YORK, 2028, 3, 2, 7, 0),
    )
    assert lot.expires_at == local(NEW_YORK, 2028, 3, 3, 0, 0)
    # A floor earlier than the validity changes nothing.
    sooner = services.lot_grant(
        organization=organization,
        quantity=1,
        source="subscription",
        invoice_date=local(NEW_YORK, 2027, 3, 1, 7, 1),
        reference="in_floor_2",
        idempotency_key="floor-2",
        expires_not_before=local(NEW_YORK, 2027, 4, 1, 7, 0),
    )
    assert sooner.expires_at == local(NEW_YORK, 2028, 3, 1, 0, 0)  # through Feb 29


def test_a_floor_does_not_make_a_never_expiring_lot_expire(organization):
    organization.lot_validity_days = None
    organization.save()
    lot = services.lot_grant(
        organization=organization,
        quantity=1,
        source="subscription",
        invoice_date=local(NEW_YORK, 2027, 3, 1, 7, 1),
        reference="in_forever",
        idempotency_key="forever",
        expires_not_before=local(NEW_YORK, 2028, 3, 2, 7, 0),
    )
    assert lot.expires_at is None


# --- A yearly plan across a leap day, through Stripe's events --------------------------------

UTC = dt.UTC
PERIOD_1 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
PERIOD_2 = dt.datetime(2028, 3, 1, 12, 0, tzinfo=UTC)  # 366 days later: Feb 29 is in between
PERIOD_3 = dt.datetime(2029, 3, 1, 12, 0, tzinfo=UTC)


def _ts(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _subscription(organization, plan, start, end) -> dict:
    return {
        "id": "sub_yearly",
        "object": "subscription",
        "status": "active",
        "metadata": {"organization_id": str(organization.pk), "plan_id": str(plan.pk)},
        "cancel_at_period_end": False,
        "pending_update": None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_yearly",
                    "object": "subscription_item",
                    "price": {"id": plan.stripe_price_id},
                    "current_period_start": _ts(start),
                    "current_period_end": _ts(end),
                }
            ],
        },
    }


def _invoice(organization, plan, start, end, reason) -> dict:
    return {
        "id": f"in_yearly_{_ts(start)}",
        "object": "invoice",
        "billing_reason": reason,
        "currency": plan.currency.lower(),
        "amount_paid": plan.price_minor,
        "parent": {
            "subscription_details": {
                "subscription": "sub_yearly",
                "metadata": {"organization_id": str(organization.pk), "plan_id": str(plan.pk)},
            }
        },
        "status_transitions": {"paid_at": _ts(start) + 60},
        "lines": {
            "data": [
                {
                    "amount": plan.price_minor,
                    "pricing": {"price_details": {"price": plan.stripe_price_id}},
                    "period": {"start": _ts(start), "end": _ts(end)},
                }
            ]
        },
    }


# The Stripe fixtures of tests/billing (a fake Stripe at the SDK's HTTP client, signed events).
prices, fake_stripe, events = (
    billing_fixtures.prices,
    billing_fixtures.fake_stripe,
    billing_fixtures.events,
)


@pytest.fixture
def yearly(prices):
    plan = SubscriptionPlan.objects.get(interval="year", name="Team")
    plan.stripe_price_id = "price_team_yearly"
    plan.save()
    return plan


def test_a_yearly_plans_credits_last_until_the_renewal_grant_across_a_leap_day(
    events, organization, yearly
):
    credits = yearly.credits_per_period
    with time_machine.travel(PERIOD_1 + dt.timedelta(seconds=60), tick=False):
        subscription = _subscription(organization, yearly, PERIOD_1, PERIOD_2)
        deliver(events, "customer.subscription.created", subscription)
        invoice = _invoice(organization, yearly, PERIOD_1, PERIOD_2, "subscription_create")
        assert deliver(events, "invoice.paid", invoice).status_code == 200
    assert usable(organization, PERIOD_1 + dt.timedelta(minutes=2)) == credits
    # 365 days after the payment it would have been gone a day before the renewal.
    assert usable(organization, PERIOD_1 + dt.timedelta(days=365, hours=1)) == credits
    assert usable(organization, PERIOD_2 - dt.timedelta(minutes=1)) == credits
    # The renewal is charged and its event arrives a little after the period ends.
    renewal_arrives = PERIOD_2 + dt.timedelta(hours=2)
    assert usable(organization, renewal_arrives) == credits
    with time_machine.travel(renewal_arrives, tick=False):
        subscription = _subscription(organization, yearly, PERIOD_2, PERIOD_3)
        deliver(events, "customer.subscription.updated", subscription)
        invoice = _invoice(organization, yearly, PERIOD_2, PERIOD_3, "subscription_cycle")
        assert deliver(events, "invoice.paid", invoice).status_code == 200
        assert usable(organization, renewal_arrives) == 2 * credits
        # What was not used of the first year is gone once the grace is over, never before.
        with time_machine.travel(renewal_arrives + dt.timedelta(days=3), tick=False):
            assert services.lots_expire() == 1
        assert usable(organization, renewal_arrives + dt.timedelta(days=3)) == credits


def test_earmarked_credits_stop_counting_at_their_lots_expiry_before_the_job_marks_it(
    organization, admin
):
    from tests.catalog.factories import LevelFactory
    from training.allocations import services as allocations

    soon = timezone.now() + dt.timedelta(hours=1)
    grant(organization, 5, expires_at=soon)
    grant(organization, 7)
    course = LevelFactory().course
    # The consumption order earmarks the soonest-expiring lot's credits first.
    allocations.course_allocate(organization=organization, course=course, quantity=6, actor=admin)
    balance = selectors.organization_balance(organization=organization)
    assert (balance.total, balance.earmarked) == (6, 6)
    later = soon + dt.timedelta(minutes=1)  # due, and no expiry job has run yet
    balance = selectors.organization_balance(organization=organization, now=later)
    assert (balance.total, balance.earmarked) == (6, 1)
    services.lots_expire(now=later)
    balance = selectors.organization_balance(organization=organization, now=later)
    assert (balance.total, balance.earmarked) == (6, 1)
