"""The plan page of a big plan in Chromium: the People list narrows as the admin types, the
member picker finds colleagues without listing everyone, Remove selected removes only the
ticked people, and after each submission the keyboard focus lands on the answer, not at the
top of the page."""

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Membership
from tests.accounts.factories import PASSWORD, member
from tests.browser.conftest import log_in
from tests.training.factories import plan_with

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_plan_of_hundreds_is_searched_paged_and_trimmed_with_the_focus_kept(
    live_server, page: Page, organization, admin
):
    for n in range(3):
        member(organization, Membership.Role.LEARNER, email=f"colleague{n}@acme.test")
    emails = [f"p{n:03}@acme.test" for n in range(120)]
    plan = plan_with(organization, admin, emails=emails)
    log_in(page, live_server.url, admin.email, PASSWORD)
    page.goto(f"{live_server.url}/training/plans/{plan.pk}/")

    rows = page.get_by_test_id("participant")
    expect(rows).to_have_count(50)
    pager = page.get_by_role("navigation", name="Pages of people")
    expect(pager).to_contain_text("People 1\N{EN DASH}50 of 120")
    page.get_by_role("link", name="Next →").click()
    expect(pager).to_contain_text("People 51\N{EN DASH}100 of 120")
    expect(page).to_have_url(re.compile(r"page=2"))

    # Typing narrows the list in place (no reload: the typed text stays focused).
    search = page.get_by_label("Search people")
    search.fill("p11")
    expect(rows).to_have_count(10)
    expect(search).to_be_focused()

    # Tick two of them and remove them; the answer's message gets the focus.
    rows.nth(0).get_by_role("checkbox").check()
    rows.nth(1).get_by_role("checkbox").check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("remove-selected").click()
    message = page.locator(".message", has_text="Removed 2 people.")
    expect(message).to_be_focused()
    expect(page.get_by_label("Search people")).to_have_value("p11")  # still filtered
    assert plan.participants.filter(removed_at__isnull=False).count() == 2

    # The member picker finds a colleague by typing, and adds them.
    page.get_by_label("Find members").fill("colleague1")
    page.get_by_label(re.compile("colleague1@acme.test")).check()
    page.get_by_role("button", name="Add people").click()
    expect(page.locator(".message", has_text="Added 1 person.")).to_be_focused()
    assert plan.participants.filter(email="colleague1@acme.test").exists()
