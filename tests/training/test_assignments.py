import datetime as dt
import uuid
from collections import Counter

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership
from credits import services as ledger
from credits.audit import ledger_audit
from credits.models import Account
from credits.services import InsufficientCredits
from tests.accounts.factories import UserFactory, member
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.support.threads import run_threads
from training.allocations import services as allocations
from training.invitations import services as invitations
from training.models import Assignment


@pytest.fixture
def course_setup(organization, admin, manager):
    grant(organization, 20)
    level = LevelFactory(credit_cost=1)
    course = level.course
    allocations.course_allocate(organization=organization, course=course, quantity=10, actor=admin)
    managed = allocations.manager_register(organization=organization, course=course, user=manager)
    allocations.manager_assign(manager=managed, quantity=5, actor=admin)
    return managed, level


def figures(managed):
    return allocations.figures(account=allocations.manager_account_of(managed))


def invite(managed, level, text):
    return invitations.invite(manager=managed, level=level, text=text, token=str(uuid.uuid4()))


@pytest.fixture(autouse=True)
def _audit(request):
    yield
    if "db" in request.fixturenames or "transactional_db" in request.fixturenames:
        report = ledger_audit()
        assert report.ok, report.violations


pytestmark = pytest.mark.django_db


def test_allocation_pool_to_course_to_manager_and_back(organization, admin, course_setup):
    managed, _ = course_setup
    course = ledger.course_account(organization=organization, course=managed.course)
    assert allocations.figures(account=course).available == 5
    assert figures(managed).available == 5
    allocations.manager_take_back(manager=managed, quantity=2, actor=admin)
    allocations.course_release(
        organization=organization, course=managed.course, quantity=7, actor=admin
    )
    pool = ledger.pool_account(organization=organization)
    assert allocations.figures(account=pool).available == 17


def test_assigning_to_managers_is_refused_while_the_course_has_nothing(
    organization, admin, manager
):
    grant(organization, 5)
    level = LevelFactory()
    managed = allocations.manager_register(
        organization=organization, course=level.course, user=manager
    )
    with pytest.raises(allocations.AllocationRefused, match="allocate credits from your pool"):
        allocations.manager_assign(manager=managed, quantity=1, actor=admin)


def test_the_seed_001_journey_figures(course_setup, django_capture_on_commit_callbacks):
    managed, level = course_setup
    with django_capture_on_commit_callbacks(execute=True):
        sent, rejected = invite(managed, level, "a@x.test, b@x.test, c@x.test, nope")
    assert rejected == [("nope", "not an email address")]
    assert (figures(managed).available, figures(managed).held) == (2, 3)
    a, b, c = sorted(sent, key=lambda s: s.email)
    invitations.invite_cancel(assignment=a, actor=managed.user)
    old_token = b.token
    b = invitations.reinvite(assignment=b)
    with pytest.raises(invitations.InvitationRefused, match="no longer valid"):
        invitations.invite_accept(token=old_token, user=UserFactory(email="b@x.test"))
    learner = UserFactory(email="c@x.test")
    invitations.invite_accept(token=c.token, user=learner)
    assert (figures(managed).available, figures(managed).held, figures(managed).used) == (3, 1, 1)
    assert Membership.objects.get(user=learner).role == "learner"


def test_inviting_more_than_available_sends_none(course_setup):
    managed, level = course_setup
    with pytest.raises(InsufficientCredits):
        invite(managed, level, ", ".join(f"p{n}@x.test" for n in range(6)))
    assert not Assignment.objects.exists()
    assert figures(managed).available == 5


def test_accepting_twice_or_for_another_address_never_charges_twice(course_setup):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "a@x.test")
    owner = UserFactory(email="a@x.test")
    invitations.invite_accept(token=sent.token, user=owner)
    invitations.invite_accept(token=sent.token, user=owner)  # the same person again
    with pytest.raises(invitations.InvitationRefused, match="accepted"):
        invitations.invite_accept(token=sent.token, user=UserFactory(email="z@x.test"))
    assert figures(managed).used == 1


def test_an_invitation_for_another_address_is_refused(course_setup):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "a@x.test")
    with pytest.raises(invitations.InvitationRefused, match=r"is for a@x\.test"):
        invitations.invite_accept(token=sent.token, user=UserFactory(email="other@x.test"))
    assert figures(managed).held == 1


def test_expired_invitations_release_their_hold_and_refuse_acceptance(course_setup, settings):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "a@x.test")
    later = timezone.now() + dt.timedelta(days=settings.INVITATION_VALID_DAYS, minutes=1)
    with time_machine.travel(later):
        with pytest.raises(invitations.InvitationRefused, match="expired"):
            invitations.invite_accept(token=sent.token, user=UserFactory(email="a@x.test"))
        assert invitations.invitations_expire() == 1
        assert invitations.invitations_expire() == 0
    assert (figures(managed).available, figures(managed).held) == (5, 0)


def test_manual_enrollment_uses_the_course_allocation_then_the_pool(
    organization, admin, learner, course_setup
):
    managed, level = course_setup
    course = ledger.course_account(organization=organization, course=managed.course)
    allocations.manual_enroll(
        organization=organization, user=learner, level=level, actor=admin, token="t1"
    )
    assert allocations.figures(account=course).used == 1
    allocations.course_release(
        organization=organization, course=managed.course, quantity=4, actor=admin
    )
    allocations.manual_enroll(
        organization=organization, user=learner, level=level, actor=admin, token="t2"
    )
    pool = ledger.pool_account(organization=organization)
    assert allocations.figures(account=pool).used == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_invitation_accepted_from_two_tabs_at_once_charges_once(
    organization, admin, manager
):
    grant(organization, 5)
    level = LevelFactory()
    allocations.course_allocate(
        organization=organization, course=level.course, quantity=3, actor=admin
    )
    managed = allocations.manager_register(
        organization=organization, course=level.course, user=manager
    )
    allocations.manager_assign(manager=managed, quantity=3, actor=admin)
    (sent,), _ = invite(managed, level, "tab@x.test")
    learner = UserFactory(email="tab@x.test")

    def accept(n: int) -> str:
        invitations.invite_accept(token=sent.token, user=learner)
        return "accepted"

    assert Counter(run_threads(2, accept)) == Counter(accepted=2)
    assert figures(managed).used == 1
    assert figures(managed).held == 0
    assert connection.vendor == "postgresql"


def test_a_manager_sees_only_their_own_course_and_no_admin_page(
    client, organization, admin, course_setup
):
    managed, _ = course_setup
    other = member(organization, Membership.Role.MANAGER, email="other.manager@acme.test")
    client.force_login(other)
    assert client.get(reverse("training:managed_course", args=[managed.pk])).status_code == 404
    for name in ("training:allocations", "credits:overview", "billing:overview", "training:plans"):
        assert client.get(reverse(name)).status_code == 403
    assert client.get(reverse("training:my_courses")).status_code == 200


def test_the_assign_credits_page_shows_courses_in_green_and_refuses_at_zero(
    admin_client, organization, admin, manager
):
    grant(organization, 5)
    level = LevelFactory()
    managed = allocations.manager_register(
        organization=organization, course=level.course, user=manager
    )
    response = admin_client.post(
        reverse("training:allocation_action"),
        {"action": "assign", "manager": managed.pk, "quantity": 1},
        follow=True,
    )
    assert "allocate credits from your pool to the course first" in response.content.decode()
    admin_client.post(
        reverse("training:allocation_action"),
        {"action": "allocate", "course": level.course.pk, "quantity": 3},
    )
    page = admin_client.get(reverse("training:allocations")).content.decode()
    assert 'class="positive" data-testid="course-available">3<' in page


def test_allocating_more_than_the_pool_takes_the_admin_to_buy_the_difference(
    admin_client, organization
):
    grant(organization, 2)
    level = LevelFactory()
    response = admin_client.post(
        reverse("training:allocation_action"),
        {"action": "allocate", "course": level.course.pk, "quantity": 5},
    )
    assert response["Location"] == "/billing/add-credits/?need=3&next=/training/allocations/"


def test_the_assign_credits_page_reads_without_writing_in_constant_queries(
    admin_client, organization
):
    grant(organization, 5)
    url = reverse("training:allocations")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured.captured_queries)

    LevelFactory()
    queries()  # the first request also stores the current organization in the session
    few = queries()
    for _ in range(6):
        LevelFactory()
    assert queries() == few
    assert not Account.objects.filter(kind="course").exists()
