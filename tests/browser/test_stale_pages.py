"""Issue 13 in a real browser: the Back button and a second tab never charge what the admin
did not see, and never enrol anyone for free."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from accounts.models import Organization
from billing.models import Purchase
from credits import selectors
from credits.audit import ledger_audit
from tests.browser.conftest import log_in
from training.models import Enrollment, TrainingPlan
from training.plans.services import participants_add

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(live_server, page: Page, settings):
    settings.DEBUG, settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = True, "", ""
    call_command("seed_demo")
    log_in(page, live_server.url, "admin@acme.example", DEMO_PASSWORD)
    return Organization.objects.get(slug="acme")


def _draft_plan(page: Page, base: str, emails: str) -> TrainingPlan:
    page.goto(base + "/catalog/")
    page.get_by_role("link", name="Excel Essentials").click()
    row = page.locator("tr", has_text="Beginner")
    row.get_by_label("Seats for Beginner").fill("3")
    row.get_by_role("button", name="Add to cart").click()
    expect(page.get_by_test_id("cart-badge")).to_have_text("3")
    page.goto(base + "/catalog/cart/")
    page.get_by_label("Plan name").fill("Stale pages")
    page.get_by_label("Start date").fill("2026-12-07")
    page.get_by_role("button", name="Checkout: create the training plan").click()
    page.get_by_label(re.compile("^Email addresses")).fill(emails)
    page.get_by_role("button", name="Add people").click()
    expect(page.get_by_test_id("plan-cost")).to_contain_text("to confirm")
    return TrainingPlan.objects.get(name="Stale pages")


def test_a_second_tab_that_changed_the_plan_stops_the_first_from_confirming(
    live_server, page: Page, demo
):
    _draft_plan(page, live_server.url, "ana@acme.example")
    before = selectors.organization_balance(organization=demo).total
    other = page.context.new_page()  # the same admin, another tab
    other.goto(page.url)
    other.get_by_label(re.compile("^Email addresses")).fill("ben@acme.example")
    other.get_by_role("button", name="Add people").click()
    expect(other.get_by_test_id("plan-cost")).to_contain_text("2 people to confirm")

    page.get_by_test_id("confirm-users").click()  # the first tab still shows one person
    expect(page.get_by_text("This plan changed since you loaded it")).to_be_visible()
    expect(page.get_by_test_id("plan-cost")).to_contain_text("2 people to confirm")
    assert selectors.organization_balance(organization=demo).total == before
    page.get_by_test_id("confirm-users").click()
    expect(page.get_by_test_id("plan-status")).to_have_text("Confirmed")
    assert selectors.organization_balance(organization=demo).total == before - 2
    assert ledger_audit().ok


def test_back_after_confirming_never_enrols_a_colleagues_newcomer_for_free(
    live_server, page: Page, demo
):
    plan = _draft_plan(page, live_server.url, "ana@acme.example")
    before = selectors.organization_balance(organization=demo).total
    page.get_by_test_id("confirm-users").click()
    expect(page.get_by_test_id("plan-status")).to_have_text("Confirmed")
    participants_add(plan=plan, rows=["late@acme.example"])  # a colleague, meanwhile
    page.goto(live_server.url + "/")
    page.go_back()
    # The restored page may already read "Confirmed", so wait for the answer to this click
    # itself before reading the database.
    with page.expect_response(lambda r: r.url.endswith("/confirm/")) as answer:
        page.get_by_test_id("confirm-users").click()
    assert answer.value.status < 500
    expect(page.get_by_test_id("plan-status")).to_have_text("Confirmed")
    late = Enrollment.objects.filter(participant__email="late@acme.example").count()
    spent = before - selectors.organization_balance(organization=demo).total
    # Whatever the browser restored, the newcomer is either charged for or not enrolled.
    assert spent == 1 + late
    assert ledger_audit().ok


def test_back_and_a_second_choice_on_add_credits_checks_out_the_second_choice(
    live_server, page: Page, demo
):
    page.goto(live_server.url + "/billing/add-credits/")
    page.locator("article.card", has_text="100 credits").get_by_role("button", name="Buy").click()
    expect(page.get_by_text("SIMULATED CHECKOUT")).to_be_visible()
    expect(page.get_by_text("100 training credits")).to_be_visible()
    page.go_back()
    page.get_by_label("Credits").fill("12")
    page.locator("#id_quantity").press("Enter")
    expect(page.get_by_text("SIMULATED CHECKOUT")).to_be_visible()
    expect(page.get_by_text("12 training credits")).to_be_visible()
    page.get_by_role("button", name="Pay (simulated)").click()
    expect(page.get_by_test_id("purchase-paid")).to_contain_text("12 credits added")
    assert sorted(Purchase.objects.values_list("quantity", flat=True)) == [12, 100]
    assert Purchase.objects.get(quantity=12).status == "paid"
    assert Purchase.objects.get(quantity=100).status == "pending"
