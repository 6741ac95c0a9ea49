"""Issue 18, part 4 in a real browser: a manager asks for credits, an admin approves from the
dashboard, a stale second tab is told it was answered, and the manager sees the credits."""

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from accounts.models import Organization, User
from catalog.models import Course
from credits.audit import ledger_audit
from tests.browser.conftest import log_in
from training.allocations import services as allocations


@pytest.mark.django_db(transaction=True)
def test_a_manager_asks_an_admin_approves_once_and_the_credits_arrive(live_server, page: Page):
    call_command("seed_demo")
    base = live_server.url
    allocations.manager_register(
        organization=Organization.objects.get(slug="acme"),
        course=Course.objects.get(title="Workplace Safety"),
        user=User.objects.get(email="manager@acme.example"),
    )

    log_in(page, base, "manager@acme.example", DEMO_PASSWORD)
    page.get_by_role("link", name="My courses").click()
    page.get_by_role("link", name="Workplace Safety").click()
    page.get_by_label("Credits", exact=True).fill("4")
    page.get_by_label("Note for your admins").fill("Night shift onboarding")
    page.get_by_role("button", name="Ask your admins").click()
    expect(page.get_by_text("Asked your admins for 4 credits")).to_be_visible()
    expect(page.get_by_test_id("request-pending")).to_contain_text("4")
    course_page = page.url

    admin = page.context.browser.new_context()
    first = admin.new_page()
    log_in(first, base, "admin@acme.example", DEMO_PASSWORD)
    request = first.get_by_test_id("credit-request")
    expect(request).to_contain_text("manager@acme.example")
    expect(request).to_contain_text("Night shift onboarding")
    second = admin.new_page()  # the same admin, a second tab on the same dashboard
    second.goto(base + "/")
    request.get_by_label("Note for manager@acme.example").fill("Approved for Q1")
    request.get_by_role("button", name="Approve 4").click()
    expect(first.get_by_text("Approved: 4 credits moved to manager@acme.example")).to_be_visible()
    expect(first.get_by_test_id("credit-request")).to_have_count(0)
    second.get_by_test_id("credit-request").get_by_role("button", name="Decline").click()
    expect(second.get_by_text("already approved by admin@acme.example")).to_be_visible()
    admin.close()

    page.goto(course_page)
    expect(page.get_by_test_id("manager-available")).to_have_text("4")
    expect(page.get_by_test_id("request-answer")).to_contain_text("approved")
    expect(page.get_by_test_id("request-answer")).to_contain_text("Approved for Q1")
    assert ledger_audit().ok
