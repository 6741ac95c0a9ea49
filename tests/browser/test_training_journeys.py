import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from accounts.models import Membership
from credits import selectors
from credits.audit import ledger_audit
from credits.models import LedgerTransaction
from tests.accounts.factories import PASSWORD, OrganizationFactory, member
from tests.browser.conftest import log_in
from tests.credits.factories import grant
from tests.training.factories import plan_with

pytestmark = pytest.mark.django_db(transaction=True)


def assert_audit_clean():
    report = ledger_audit()
    assert report.ok, report.violations


def test_catalog_to_cart_short_buy_back_checkout_plan_confirm(live_server, page: Page, settings):
    settings.DEBUG, settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = True, "", ""
    # Acme Corp has 830 credits, 30 of them earmarked for a course: 800 available to plans.
    call_command("seed_demo")
    log_in(page, live_server.url, "admin@acme.example", DEMO_PASSWORD)

    page.goto(live_server.url + "/catalog/")
    page.get_by_label("Search courses").fill("excel ess")
    results = page.locator("#results")
    expect(results).to_contain_text("Excel Essentials")
    expect(results).not_to_contain_text("Workplace Safety")
    results.get_by_role("link", name="Excel Essentials").click()
    row = page.locator("tr", has_text="Beginner")
    row.get_by_label("Seats for Beginner").fill("900")
    row.get_by_role("button", name="Add to cart").click()
    expect(page.get_by_test_id("cart-badge")).to_have_text("900")  # no reload needed

    page.get_by_role("link", name=re.compile("^Cart")).click()
    expect(page.get_by_test_id("shortfall")).to_contain_text("100 more than you have")
    page.get_by_role("button", name="Buy the 100 missing credits").click()
    page.get_by_role("button", name="Buy 100 credits").click()
    page.get_by_role("button", name="Pay (simulated)").click()
    expect(page.get_by_test_id("purchase-paid")).to_contain_text("100 credits added")
    page.get_by_role("button", name="Continue where you were").click()
    expect(page).to_have_url(re.compile(r"/catalog/cart/$"))

    page.get_by_label("Plan name").fill("Excel for Finance")
    page.get_by_label("Start date").fill("2026-12-01")
    page.get_by_role("button", name="Checkout: create the training plan").click()
    expect(page.get_by_role("heading", name="Excel for Finance")).to_be_visible()
    page.get_by_label(re.compile("^Email addresses")).fill("ana@acme.example, ben@acme.example")
    page.get_by_role("button", name="Add people").click()
    expect(page.get_by_test_id("plan-cost")).to_contain_text("2 people to confirm")
    expect(page.get_by_test_id("plan-available")).to_have_text("900")
    page.get_by_test_id("confirm-users").click()
    expect(page.get_by_test_id("plan-status")).to_have_text("Confirmed")
    expect(page.get_by_test_id("plan-available")).to_have_text("898")
    assert_audit_clean()


@pytest.fixture
def small_org(db):
    org = OrganizationFactory(name="Start Co", slug="start-co")
    admin = member(org, Membership.Role.ADMIN, email="boss@start.test")
    learner = member(org, Membership.Role.LEARNER, email="lea@start.test")
    grant(org, 10)
    return org, admin, learner


def test_policy_start_holds_on_confirm_and_deducts_when_the_learner_starts(
    live_server, page: Page, small_org
):
    org, admin, learner = small_org
    org.redemption_point = "start"
    org.save()
    plan = plan_with(org, admin, emails=[learner.email], costs=(3,))

    log_in(page, live_server.url, admin.email, PASSWORD)
    page.goto(f"{live_server.url}/training/plans/{plan.pk}/")
    page.get_by_test_id("confirm-users").click()
    expect(page.get_by_test_id("plan-available")).to_have_text("7")
    figures = selectors.organization_balance(organization=org)
    assert (figures.total, figures.held) == (10, 3)

    page.context.clear_cookies()
    log_in(page, live_server.url, learner.email, PASSWORD)
    page.goto(live_server.url + "/training/my/")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("Started — 0%")).to_be_visible()
    figures = selectors.organization_balance(organization=org)
    assert (figures.total, figures.held) == (7, 0)
    assert_audit_clean()


def test_a_double_click_on_confirm_users_charges_once(live_server, page: Page, small_org):
    org, admin, _ = small_org
    plan = plan_with(org, admin, emails=["a@start.test", "b@start.test"], costs=(2,))
    log_in(page, live_server.url, admin.email, PASSWORD)
    page.goto(f"{live_server.url}/training/plans/{plan.pk}/")
    page.get_by_test_id("confirm-users").dblclick()
    expect(page.get_by_test_id("plan-status")).to_have_text("Confirmed")
    assert selectors.organization_balance(organization=org).total == 6
    assert LedgerTransaction.objects.filter(organization=org, kind="redeem").count() == 1
    assert_audit_clean()
