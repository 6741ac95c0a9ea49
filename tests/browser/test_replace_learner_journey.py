"""Issue 18, part 3 in a real browser: an admin gives a confirmed learner's seat to a
colleague from the plan page, and a two-week-old seat from the "not started" list; the
credits stay held throughout."""

import datetime as dt

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from accounts.models import Organization, User
from credits import selectors
from credits.audit import ledger_audit
from tests.browser.conftest import log_in
from tests.training.factories import plan_with
from training.plans.services import plan_confirm


@pytest.mark.django_db(transaction=True)
def test_replace_from_the_plan_page_and_from_the_not_started_list(live_server, page: Page):
    call_command("seed_demo")
    base = live_server.url
    acme = Organization.objects.get(slug="acme")
    acme.redemption_point = "start"
    acme.save()
    admin = User.objects.get(email="admin@acme.example")
    plan = plan_with(acme, admin, emails=["ana@acme.example"])
    plan_confirm(plan=plan, user=admin, token="now")
    with time_machine.travel(timezone.now() - dt.timedelta(days=20)):
        old = plan_with(acme, admin, emails=["slow@acme.example"])
        plan_confirm(plan=old, user=admin, token="then")
    held = selectors.organization_balance(organization=acme).held

    log_in(page, base, "admin@acme.example", DEMO_PASSWORD)
    page.goto(f"{base}/training/plans/{plan.pk}/")
    row = page.get_by_test_id("participant").filter(has_text="ana@acme.example")
    row.get_by_label("Give ana@acme.example's seat to").fill("ben@acme.example")
    row.get_by_role("button", name="Replace").click()
    expect(page.get_by_text("ana@acme.example's seat is now ben@acme.example's")).to_be_visible()
    expect(page.get_by_test_id("participant").filter(has_text="ben@acme.example")).to_contain_text(
        "Confirmed"
    )

    page.goto(base + "/training/plans/")
    page.get_by_role("link", name="Not started for two weeks").click()
    seat = page.get_by_test_id("not-started").filter(has_text="slow@acme.example")
    seat.get_by_label("Give slow@acme.example's seat to").fill("quick@acme.example")
    seat.get_by_role("button", name="Replace").click()
    expect(page.get_by_text("slow@acme.example's seat is now quick@acme.example's")).to_be_visible()
    expect(page.get_by_test_id("not-started")).to_have_count(0)
    assert selectors.organization_balance(organization=acme).held == held
    assert ledger_audit().ok


@pytest.mark.django_db(transaction=True)
def test_a_manager_gives_a_pending_invitation_to_someone_else(live_server, page: Page):
    import uuid

    from catalog.models import Course
    from training.allocations import services as allocations
    from training.invitations import services as invitations

    call_command("seed_demo")
    base = live_server.url
    acme = Organization.objects.get(slug="acme")
    admin = User.objects.get(email="admin@acme.example")
    course = Course.objects.get(title="Workplace Safety")
    allocations.course_allocate(organization=acme, course=course, quantity=2, actor=admin)
    managed = allocations.manager_register(
        organization=acme, course=course, user=User.objects.get(email="manager@acme.example")
    )
    allocations.manager_assign(manager=managed, quantity=2, actor=admin)
    with time_machine.travel(timezone.now() - dt.timedelta(days=16)):
        invitations.invite(
            manager=managed,
            level=course.levels.first(),
            text="slow@x.example",
            token=str(uuid.uuid4()),
        )

    log_in(page, base, "manager@acme.example", DEMO_PASSWORD)
    page.goto(f"{base}/training/courses/{managed.pk}/")
    page.get_by_test_id("stale-link").click()
    row = page.get_by_test_id("invitation").filter(has_text="slow@x.example")
    row.get_by_label("Give slow@x.example's invitation to").fill("quick@x.example")
    row.get_by_role("button", name="Replace").click()
    expect(page.get_by_text("slow@x.example's invitation is now quick@x.example's")).to_be_visible()
    expect(page.get_by_test_id("manager-held")).to_have_text("1")
    assert ledger_audit().ok
