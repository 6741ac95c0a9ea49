import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from credits.audit import ledger_audit
from tests.browser.conftest import log_in
from training.models import Assignment


@pytest.mark.django_db(transaction=True)
def test_allocate_invite_cancel_reinvite_accept_and_follow_progress(live_server, page: Page):
    call_command("seed_demo")
    base = live_server.url

    # The admin earmarks 10 credits for a course and hands 5 to its manager.
    log_in(page, base, "admin@acme.example", DEMO_PASSWORD)
    page.goto(base + "/training/allocations/")
    course = page.get_by_test_id("course-workplace-safety")
    course.get_by_label("Credits for Workplace Safety").fill("10")
    course.get_by_role("button", name="Allocate from pool").click()
    expect(course.get_by_test_id("course-available")).to_have_text("10")
    # The member box suggests colleagues as the admin types, instead of listing everyone.
    box = course.get_by_label("Member to register as manager of Workplace Safety")
    box.press_sequentially("manager@")
    expect(page.locator("#member-options option[value='manager@acme.example']")).to_have_count(1)
    box.fill("manager@acme.example")
    course.get_by_role("button", name="Register as manager").click()
    course.get_by_label("Credits for manager@acme.example on Workplace Safety").fill("5")
    course.get_by_role("button", name="Assign", exact=True).click()
    expect(course.get_by_test_id("course-available")).to_have_text("5")

    # The manager invites three, cancels one and re-invites another.
    page.context.clear_cookies()
    log_in(page, base, "manager@acme.example", DEMO_PASSWORD)
    page.get_by_role("link", name="My courses").click()
    page.get_by_role("link", name="Workplace Safety").click()
    page.get_by_label("Email addresses").fill("ana@x.test, ben@x.test, cy@x.test")
    page.get_by_role("button", name="Send invitations").click()
    expect(page.get_by_test_id("manager-held")).to_have_text("3")
    page.get_by_test_id("invitation").filter(has_text="ana@x.test").get_by_role(
        "button", name="Cancel invite"
    ).click()
    old_link = f"{base}/training/accept/{Assignment.objects.get(email='ben@x.test').token}/"
    page.get_by_test_id("invitation").filter(has_text="ben@x.test").get_by_role(
        "button", name="Re-invite"
    ).click()
    expect(page.get_by_text("ben@x.test invited again with a new link.")).to_be_visible()
    new_link = f"{base}/training/accept/{Assignment.objects.get(email='ben@x.test').token}/"

    # The learner: the old link is dead, the new one enrolls them.
    learner = page.context.browser.new_page()
    learner.goto(old_link)
    expect(learner.get_by_test_id("refusal")).to_contain_text("no longer valid")
    learner.goto(new_link)
    learner.get_by_label("Choose a password").fill("a-long-learner-passphrase")
    learner.get_by_role("button", name="Accept the invitation").click()
    expect(learner.get_by_text("You are enrolled in")).to_be_visible()
    learner.get_by_role("button", name="Start").click()
    learner.close()

    # The manager follows progress; three holds, one released, one captured.
    page.reload()
    expect(page.get_by_test_id("invitation").filter(has_text="ben@x.test")).to_contain_text(
        "Started"
    )
    expect(page.get_by_test_id("manager-available")).to_have_text("3")
    expect(page.get_by_test_id("manager-held")).to_have_text("1")
    expect(page.get_by_test_id("manager-used")).to_have_text("1")
    report = ledger_audit()
    assert report.ok, report.violations
