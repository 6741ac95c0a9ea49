"""Overage months are the organization's own calendar months: billed in the hour after its
midnight on the 1st, one invoice per month, once; never accrued where it cannot be billed.

Beat is simulated from the real `CELERY_BEAT_SCHEDULE` entry (every minute it fires in a
window, in time order with the overage being recorded), so these tests cover the schedule as
well as the job."""

import datetime as dt
import logging
import threading
import time
import zoneinfo

import pytest
import time_machine
from django.conf import settings
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from billing import tasks
from billing.models import OverageInvoice, PriceList
from credits import services as ledger
from credits.models import Overage, OverageDue
from outbox.models import OutboxMessage
from tests.accounts.factories import OrganizationFactory, UserFactory
from tests.credits.factories import grant, redeem
from tests.support.admin_forms import post_change

pytestmark = pytest.mark.django_db

JOB = "billing.tasks.overage_invoices_monthly"


def local(zone: str, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(zone))


def _fires(schedule, at: dt.datetime) -> bool:
    """Whether the crontab fires at this UTC minute (Celery's time zone is UTC)."""
    return (
        at.minute in schedule.minute
        and at.hour in schedule.hour
        and at.day in schedule.day_of_month
        and at.month in schedule.month_of_year
        and at.isoweekday() % 7 in schedule.day_of_week
    )


def beat(start: dt.datetime, end: dt.datetime, fake_stripe, events=()) -> dict[str, dt.datetime]:
    """Run the overage job whenever beat would between `start` and `end`, interleaved with
    `events` ((when, callable)); returns when each overage invoice (by month) was created."""
    assert settings.CELERY_TIMEZONE == "UTC"
    (entry,) = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == JOB]
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    runs, at = [], start.replace(second=0, microsecond=0)
    while at < end:
        if _fires(entry["schedule"], at):
            runs.append((at, tasks.overage_invoices_monthly))
        at += dt.timedelta(minutes=1)
    billed: dict[str, dt.datetime] = {}
    for when, action in sorted([*runs, *events], key=lambda pair: pair[0]):
        seen = len(fake_stripe.calls)
        with time_machine.travel(when, tick=False):
            action()
        for call in fake_stripe.calls[seen:]:
            if call.path == "/v1/invoices":
                billed.setdefault(call.params["metadata[overage_month]"], when)
    return billed


def overage_at(organization: Organization, when: dt.datetime, quantity: int):
    def record():
        redeem(ledger.pool_account(organization=organization), quantity, allow_overage=True)

    return (when.astimezone(dt.UTC), record)


def billing_org(zone: str, currency: str = "USD", **fields) -> Organization:
    return OrganizationFactory(
        time_zone=zone, currency=currency, when_short="bill_overage", **fields
    )


def test_november_in_los_angeles_is_billed_just_after_midnight_on_december_1_there(
    prices, fake_stripe
):
    zone = "America/Los_Angeles"
    organization = billing_org(zone)
    billed = beat(
        local(zone, 2026, 11, 29),
        local(zone, 2026, 12, 3),
        fake_stripe,
        [
            overage_at(organization, local(zone, 2026, 11, 15, 10), 4),
            overage_at(organization, local(zone, 2026, 11, 30, 23, 30), 2),  # Dec 1 07:30 UTC
            overage_at(organization, local(zone, 2026, 12, 1, 0, 30), 7),  # December's
        ],
    )
    # The first run of December 1 in Los Angeles, not January 1.
    assert list(billed) == ["2026-11"]
    assert billed["2026-11"].astimezone(zoneinfo.ZoneInfo(zone)) == local(zone, 2026, 12, 1, 0, 20)
    (item,) = fake_stripe.calls_to("/v1/invoiceitems")
    assert item.params["amount"] == "6000"  # November's 4 + 2 credits at $10.00
    assert item.params["description"] == (
        "Overage November 2026 (America/Los_Angeles): 6 credits at the list price"
    )
    assert item.idempotency_key == f"overage:{organization.pk}:2026-11:item"
    assert Overage.objects.get(billed_at__isnull=True).quantity == 7
    # December's overage waits for December to end there.
    assert OverageDue.objects.get(organization=organization).since == local(
        zone, 2026, 12, 1, 0, 30
    )


@pytest.mark.parametrize(
    "zone", ["Pacific/Honolulu", "UTC", "Pacific/Tongatapu"], ids=["UTC-10", "UTC", "UTC+13"]
)
def test_each_zone_is_billed_for_its_own_month_in_the_hour_after_its_midnight(
    zone, prices, fake_stripe
):
    organization = billing_org(zone)
    events = [
        overage_at(organization, local(zone, 2026, 11, 30, 23, 30), 3),
        overage_at(organization, local(zone, 2026, 12, 1, 0, 30), 5),
        overage_at(organization, local(zone, 2026, 12, 31, 23, 59), 1),
        overage_at(organization, local(zone, 2027, 1, 1, 0, 1), 9),
    ]
    # Windows wide enough to hold every zone's midnight, a day either side.
    billed = beat(
        local("UTC", 2026, 11, 29, 12),
        local("UTC", 2026, 12, 2, 12),
        fake_stripe,
        events[:2],
    )
    billed |= beat(
        local("UTC", 2026, 12, 30, 12), local("UTC", 2027, 1, 2, 12), fake_stripe, events[2:]
    )
    assert list(billed) == ["2026-11", "2026-12"]
    for month, first_day in [("2026-11", (2026, 12, 1)), ("2026-12", (2027, 1, 1))]:
        midnight = local(zone, *first_day)
        assert midnight <= billed[month] < midnight + dt.timedelta(hours=1), month
    amounts = [call.params["amount"] for call in fake_stripe.calls_to("/v1/invoiceitems")]
    assert amounts == ["3000", "6000"]  # November: 3; December: 5 + 1
    assert Overage.objects.get(billed_at__isnull=True).quantity == 9  # January's


def test_a_job_delivered_twice_and_a_stripe_failure_bill_each_month_once(prices, fake_stripe):
    zone = "America/Los_Angeles"
    organization = billing_org(zone)
    for when, quantity in [(local(zone, 2026, 10, 20, 9), 3), (local(zone, 2026, 11, 20, 9), 4)]:
        with time_machine.travel(when, tick=False):
            redeem(ledger.pool_account(organization=organization), quantity, allow_overage=True)
    # Beat was down through December 1: both months are due at once, each on its own invoice.
    fake_stripe.refuse_next["/v1/invoiceitems"] = 1
    with time_machine.travel(local(zone, 2026, 12, 3, 9), tick=False):
        with pytest.raises(Exception, match="refused"):
            tasks.overage_invoice.apply(args=[organization.pk], retries=5, throw=True)
        assert OverageInvoice.objects.get().status == "invoicing"
        assert tasks.overage_invoices_monthly() == 1
        assert tasks.overage_invoices_monthly() == 0  # billed: not due again
        assert tasks.overage_invoice(organization.pk) is None
        tasks.overage_invoice.delay(organization.pk)
    items = fake_stripe.calls_to("/v1/invoiceitems")
    keys = [call.idempotency_key for call in items]
    october, november = (f"overage:{organization.pk}:2026-{m}:item" for m in ("10", "11"))
    assert keys == [october, october, november]  # the refused line, its retry, November's
    assert [call.params["amount"] for call in items[1:]] == ["3000", "4000"]
    assert [(i.month, i.quantity, i.status) for i in OverageInvoice.objects.order_by("month")] == [
        ("2026-10", 3, "open"),
        ("2026-11", 4, "open"),
    ]
    assert not Overage.objects.filter(billed_at__isnull=True).exists()
    assert not OverageDue.objects.exists()


@pytest.fixture
def support_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, email="sam@support.test"))
    return client


def test_a_currency_without_a_price_list_cannot_be_put_on_bill_overage(support_client, prices):
    organization = OrganizationFactory(time_zone="Europe/Berlin", currency="EUR")
    response = post_change(support_client, organization, when_short="bill_overage")
    assert response.status_code == 200
    assert "There is no EUR price list, so overage in EUR could not be billed." in (
        response.content.decode()
    )
    organization.refresh_from_db()
    assert organization.when_short == "buy"
    # Nor by moving an organization on bill_overage into that currency.
    dollars = billing_org("America/New_York")
    response = post_change(support_client, dollars, currency="EUR")
    assert "There is no EUR price list" in response.content.decode()
    dollars.refresh_from_db()
    assert dollars.currency == "USD"
    # With a EUR price list it is allowed.
    PriceList.objects.create(currency="EUR", list_price_minor=900)
    assert post_change(support_client, organization, when_short="bill_overage").status_code == 302
    organization.refresh_from_db()
    assert organization.when_short == "bill_overage"


def test_overage_that_cannot_be_billed_is_logged_and_staff_are_emailed_until_it_is_billed(
    support_client, prices, fake_stripe, caplog
):
    zone = "Europe/Berlin"
    # Put on bill_overage before the rule existed (or its price list deleted since).
    organization = billing_org(zone, currency="EUR", name="Euro GmbH")
    with time_machine.travel(local(zone, 2026, 11, 10, 12), tick=False):
        redeem(ledger.pool_account(organization=organization), 6, allow_overage=True)
    caplog.set_level(logging.ERROR, logger="billing.overage")
    for hour in (1, 2, 3):
        with time_machine.travel(local(zone, 2026, 12, 1, hour, 20), tick=False):
            tasks.overage_invoices_monthly()
    cannot = [r for r in caplog.records if "cannot be billed: no EUR price list" in r.getMessage()]
    assert len(cannot) == 3  # every run, loudly
    (mail,) = OutboxMessage.objects.filter(kind="overage_unbillable")  # once a day
    assert mail.recipient == "sam@support.test"
    assert mail.subject == "Overage of Euro GmbH cannot be billed: no EUR price list"
    assert "Overage recorded and not billed: 6 credits." in mail.text
    assert fake_stripe.calls_to("/v1/invoices") == []
    assert Overage.objects.get().billed_at is None  # kept, not lost
    with time_machine.travel(local(zone, 2026, 12, 2, 1, 20), tick=False):
        tasks.overage_invoices_monthly()
    assert OutboxMessage.objects.filter(kind="overage_unbillable").count() == 2  # the next day

    # Once a EUR price list exists, the next run bills November in euros.
    PriceList.objects.create(currency="EUR", list_price_minor=900)
    with time_machine.travel(local(zone, 2026, 12, 2, 2, 20), tick=False):
        assert tasks.overage_invoices_monthly() == 1
    (item,) = fake_stripe.calls_to("/v1/invoiceitems")
    assert (item.params["amount"], item.params["currency"]) == ("5400", "eur")
    assert item.params["description"].startswith("Overage November 2026 (Europe/Berlin)")
    assert Overage.objects.get().billed_at is not None


def test_the_billing_chart_counts_months_in_the_organizations_zone_whoever_looks(
    admin, admin_client, organization, prices
):
    organization.time_zone = "Pacific/Honolulu"
    organization.save()
    admin.time_zone = "Europe/London"  # the viewer's own zone is ten hours ahead
    admin.save()
    # 20:00 on November 30 in Honolulu is 06:00 on December 1 in London.
    with time_machine.travel(local("Pacific/Honolulu", 2026, 11, 30, 20), tick=False):
        grant(organization, 40)
    with time_machine.travel(local("Pacific/Honolulu", 2026, 12, 15, 12), tick=False):
        chart = admin_client.get(reverse("billing:overview")).context["chart"]
    bought = {bar.label for bar in chart["bars"] if bar.series == "bought"}
    assert "Bought in November 2026: 40" in bought
    assert "Bought in December 2026: 0" in bought
    assert chart["months"][-1]["label"] == "Dec"


@pytest.mark.django_db(transaction=True)
def test_overage_recorded_while_the_job_refreshes_its_due_row_stays_due(prices):
    organization = billing_org("UTC")
    # Due, with nothing unbilled left (say, all reversed): a refresh alone drops the row.
    OverageDue.objects.create(organization=organization, since=timezone.now())
    refreshed = []

    def refresh():
        try:
            refreshed.append(ledger.overage_due_refresh(organization=organization))
        finally:
            connection.close()

    with transaction.atomic():
        redeem(ledger.pool_account(organization=organization), 2, allow_overage=True)
        job = threading.Thread(target=refresh)
        job.start()
        _wait_until_blocked()  # the refresh waits for the row the trigger locked
    job.join()
    recorded = Overage.objects.get().created_at
    assert refreshed == [recorded]
    assert OverageDue.objects.get(organization=organization).since == recorded


def _wait_until_blocked() -> None:
    """Until another session of this database waits for a lock (the test fails, rather than
    hangs, if it never does)."""
    with connections["default"].cursor() as cursor:
        for _ in range(500):
            # Activity is read once per transaction unless the snapshot is dropped.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the refresh never waited for the recording transaction")


def test_a_month_beyond_one_stripe_charge_is_split_across_invoices_and_nothing_is_lost(
    prices, fake_stripe
):
    zone = "UTC"
    organization = billing_org(zone)
    # At $10.00 one charge (at most $999,999.99) holds 99,999 credits.
    most = 99_999
    for day, quantity in [(5, 60_000), (10, 50_000), (20, 30_000)]:
        with time_machine.travel(local(zone, 2026, 11, day, 9), tick=False):
            redeem(ledger.pool_account(organization=organization), quantity, allow_overage=True)

    with time_machine.travel(local(zone, 2026, 12, 1, 0, 20), tick=False):
        tasks.overage_invoice(organization.pk)
    amounts = [int(call.params["amount"]) for call in fake_stripe.calls_to("/v1/invoiceitems")]
    # November's first row fits one charge; what does not waits for the next invoice, and
    # the month after November is not over yet.
    assert amounts == [60_000 * 1_000]
    assert all(amount <= 99_999_999 for amount in amounts)
    assert sum(
        Overage.objects.filter(billed_at__isnull=True).values_list("quantity", flat=True)
    ) == (80_000)

    with time_machine.travel(local(zone, 2027, 1, 1, 0, 20), tick=False):
        tasks.overage_invoice(organization.pk)
    with time_machine.travel(local(zone, 2027, 2, 1, 0, 20), tick=False):
        tasks.overage_invoice(organization.pk)
    amounts = [int(call.params["amount"]) for call in fake_stripe.calls_to("/v1/invoiceitems")]
    assert all(amount <= most * 1_000 for amount in amounts)
    assert sum(amounts) == 140_000 * 1_000  # every credit billed, once
    assert not Overage.objects.filter(billed_at__isnull=True).exists()
