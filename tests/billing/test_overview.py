import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.urls import reverse

from billing.overage import overage_invoice
from billing.tasks import overage_invoices_monthly
from credits import services
from credits.models import Overage
from tests.billing.factories import PurchaseFactory
from tests.credits.factories import grant, redeem

pytestmark = pytest.mark.django_db


def test_billing_page_shows_balance_purchases_chart_and_no_refund_button(
    admin_client, organization, prices
):
    grant(organization, 40)
    redeem(services.pool_account(organization=organization), 15)
    page = admin_client.get(reverse("billing:overview")).content.decode()
    assert "<svg" in page and 'data-testid="monthly-chart"' in page
    assert "Bought in" in page and ": 40</title>" in page
    assert ": 15</title>" in page
    assert "refund" not in page.lower().replace("no refunds", "")
    assert "Subscribe" in page


def test_the_chart_covers_the_last_12_months_ending_with_this_one(admin_client, prices):
    with time_machine.travel(dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC)):
        chart = admin_client.get(reverse("billing:overview")).context["chart"]
    labels = [m["label"] for m in chart["months"]]
    assert labels == [
        "Dec",
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "May",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Oct",
        "Nov",
    ]


@pytest.fixture
def overage_org(organization):
    organization.when_short = "bill_overage"
    organization.save()
    return organization


def test_monthly_overage_is_invoiced_once_at_the_list_price(overage_org, prices, fake_stripe):
    pool = services.pool_account(organization=overage_org)
    with time_machine.travel(dt.datetime(2026, 10, 10, 12, tzinfo=dt.UTC)):
        grant(overage_org, 2)
        redeem(pool, 5, allow_overage=True)  # 3 credits of overage in October
    with time_machine.travel(dt.datetime(2026, 11, 1, 11, tzinfo=dt.UTC)):
        assert overage_invoices_monthly() == 1
        assert overage_invoice(organization_id=overage_org.pk) is None  # already billed
    item = fake_stripe.calls_to("/v1/invoiceitems")[0]
    assert (item.params["amount"], item.params["currency"]) == ("3000", "usd")
    assert item.idempotency_key == f"overage:{overage_org.pk}:2026-10:item"
    (invoice,) = fake_stripe.calls_to("/v1/invoices")
    # The line belongs to this invoice: nothing loose for the next subscription invoice.
    assert invoice.params["pending_invoice_items_behavior"] == "exclude"
    assert item.params["invoice"] == Overage.objects.get().invoice_reference
    billed = Overage.objects.get()
    assert billed.billed_at is not None and billed.invoice_reference.startswith("in_test_")


def test_overage_of_the_current_month_waits_for_next_month(overage_org, prices, fake_stripe):
    pool = services.pool_account(organization=overage_org)
    with time_machine.travel(dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC)):
        redeem(pool, 2, allow_overage=True)
        assert overage_invoice(organization_id=overage_org.pk) is None
    assert fake_stripe.calls_to("/v1/invoices") == []


def test_the_chart_has_a_value_axis_and_its_figures_as_a_table(admin_client, organization, prices):
    grant(organization, 40)
    redeem(services.pool_account(organization=organization), 15)
    page = admin_client.get(reverse("billing:overview")).content.decode()
    # Values readable without hovering: an axis from 0 to the tallest bar, and a table.
    for tick in (">0</text>", ">20</text>", ">40</text>"):
        assert tick in page
    table = page[
        page.index('data-testid="monthly-table"') : page.index(
            "</table>", page.index("monthly-table")
        )
    ]
    month = dt.datetime.now(dt.UTC).astimezone(zoneinfo.ZoneInfo(organization.time_zone))
    row = table[table.index(f'<th scope="row">{month:%B %Y}</th>') :].split("</tr>")[0]
    assert '<td class="num">40</td><td class="num">15</td><td class="num">0</td>' in row


def test_a_paid_purchase_without_a_stripe_invoice_links_to_its_details(
    admin_client, organization, prices
):
    purchase = PurchaseFactory(organization=organization, status="paid")
    page = admin_client.get(reverse("billing:overview")).content.decode()
    assert f'<a href="{reverse("billing:purchase", args=[purchase.pk])}">Details</a>' in page


def test_the_chart_splits_a_utc_day_at_the_organizations_month_boundary(
    admin_client, admin, organization, prices
):
    """Read from the daily totals (credits.usage): November begins in New York at 04:00
    UTC, inside a UTC day, and the months are the organization's whoever looks."""
    admin.time_zone = "Asia/Tokyo"
    admin.save()
    november = dt.datetime(2026, 11, 1, tzinfo=zoneinfo.ZoneInfo(organization.time_zone))
    with time_machine.travel(november - dt.timedelta(minutes=30), tick=False):
        grant(organization, 40)  # 03:30 UTC on November 1: October's
    with time_machine.travel(november + dt.timedelta(minutes=10), tick=False):
        redeem(services.pool_account(organization=organization), 15)
    with time_machine.travel(dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC)):
        rows = admin_client.get(reverse("billing:overview")).context["chart"]["rows"]
    assert rows[-2:] == [
        {"month": dt.date(2026, 10, 1), "bought": 40, "used": 0, "expired": 0},
        {"month": dt.date(2026, 11, 1), "bought": 0, "used": 15, "expired": 0},
    ]
