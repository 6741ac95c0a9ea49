"""Every page each role uses, in Chromium: no WCAG 2.1 A/AA violation axe-core can find, and
nothing wider than a 390 px phone screen (wide tables scroll inside their own frame)."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core.management import call_command
from playwright.sync_api import Page

from accounts.demo import DEMO_PASSWORD
from accounts.models import Organization, User
from billing.models import Purchase
from catalog.models import Course, Level
from catalog.services import cart_add
from tests.billing.factories import PurchaseFactory
from tests.browser.conftest import log_in
from tests.training.factories import plan_with
from training.allocations import services as allocations
from training.invitations import services as invitations
from training.models import Assignment, CourseManager, Enrollment, Participant, TrainingPlan
from training.plans.services import plan_confirm

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Axe()
# Every rule axe-core has, best practices included: violations of any impact count.
ALL_RULES = {"resultTypes": ["violations"]}
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _admin_pages() -> list[str]:
    plan = TrainingPlan.objects.filter(organization__slug="acme").first()
    assert plan is not None, "the demo seeds a plan: its page is the busiest of all"
    course = Course.objects.filter(published=True).first()
    purchase = Purchase.objects.filter(organization__slug="acme").first()
    assert purchase is not None, "the demo seeds purchases"
    return [
        "/",
        "/catalog/",
        "/catalog/cart/",
        "/training/plans/",
        "/training/plans/not-started/",
        "/training/allocations/",
        "/credits/",
        "/credits/finance/",
        "/billing/",
        "/billing/add-credits/?need=999",
        "/billing/add-credits/?quantity=999",
        f"/billing/purchases/{purchase.pk}/",
        f"/training/plans/{plan.pk}/",
        f"/training/plans/{plan.pk}/?q=learner&status=confirmed",
        f"/training/plans/{plan.pk}/?member_q=learner",
        f"/catalog/courses/{course.slug}/",
        "/catalog/?q=excel",
        "/credits/?kind=redeem",
    ]


def _manager_pages() -> list[str]:
    managed = CourseManager.objects.filter(user__email="manager@acme.example").first()
    assert managed is not None, "the demo's manager manages a course"
    return ["/", "/training/courses/", f"/training/courses/{managed.pk}/"]


def _problems(page: Page, base: str, paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        page.set_viewport_size(DESKTOP)
        page.goto(base + path)
        results = AXE.run(page, options=ALL_RULES)
        for violation in results.response["violations"]:
            targets = [node["target"] for node in violation["nodes"]][:3]
            found.append(f"{path}: {violation['id']} ({violation['help']}) at {targets}")
        page.set_viewport_size(PHONE)
        page.goto(base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            found.append(f"{path}: {width} px wide at {PHONE['width']} px")
    return found


@pytest.fixture
def demo(live_server, settings):
    """The demo, plus what it does not seed: a confirmed plan with a member and an invited
    address, and a course the demo's manager manages with an invitation out."""
    settings.DEBUG, settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = True, "", ""
    call_command("seed_demo")
    acme = Organization.objects.get(slug="acme")
    admin = User.objects.get(email="admin@acme.example")
    plan = plan_with(acme, admin, emails=["learner1@acme.example", "new.hire@acme.example"])
    plan_confirm(plan=plan, user=admin, token="a11y")
    level = Level.objects.filter(course__published=True).first()
    managed = allocations.manager_register(
        organization=acme, course=level.course, user=User.objects.get(email="manager@acme.example")
    )
    allocations.course_allocate(
        organization=acme, course=level.course, quantity=5, actor=admin, key="a11y-course"
    )
    allocations.manager_assign(manager=managed, quantity=3, actor=admin, key="a11y-manager")
    invitations.invite(manager=managed, level=level, text="invitee@x.test", token="a11y")
    PurchaseFactory(organization=acme, created_by=admin, status="paid")
    # Something in the cart, so that its page shows its table.
    cart_add(organization=acme, user=admin, level=level, seats=3)
    return live_server.url


def test_admin_pages_are_accessible_and_fit_a_phone(demo, page: Page):
    log_in(page, demo, "admin@acme.example", DEMO_PASSWORD)
    assert _problems(page, demo, _admin_pages()) == []


def test_manager_pages_are_accessible_and_fit_a_phone(demo, page: Page):
    log_in(page, demo, "manager@acme.example", DEMO_PASSWORD)
    assert _problems(page, demo, _manager_pages()) == []


def test_learner_pages_and_the_login_are_accessible_and_fit_a_phone(demo, page: Page):
    # What someone without an account sees: the login, a password reset, the link of a
    # manager's invitation and of a plan's invitation.
    invitation = Assignment.objects.get(email="invitee@x.test")
    newcomer = Participant.objects.get(email="new.hire@acme.example")
    anonymous = [
        "/accounts/login/",
        "/accounts/password-reset/",
        f"/training/accept/{invitation.token}/",
        f"/training/join/{newcomer.invite_token}/",
    ]
    assert _problems(page, demo, anonymous) == []
    enrolled = Enrollment.objects.filter(participant__user__isnull=False).first()
    assert enrolled is not None, "the demo enrolls learners"
    log_in(page, demo, enrolled.participant.user.email, DEMO_PASSWORD)
    assert _problems(page, demo, ["/", "/training/my/"]) == []
