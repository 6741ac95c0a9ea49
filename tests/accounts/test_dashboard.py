"""The dashboard each role lands on: admins are warned before assigned credits pass their
credits (not only by email); managers see their own courses, credits and learners."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from credits import services as ledger
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant, hold
from tests.training.factories import plan_with
from training.allocations import services as allocations
from training.invitations import services as invitations
from training.models import Assignment
from training.plans.services import plan_confirm

pytestmark = pytest.mark.django_db


def _dashboard(client) -> str:
    return client.get(reverse("dashboard")).content.decode()


def test_admins_are_warned_when_assigned_credits_near_their_credits(admin_client, organization):
    grant(organization, 10)
    pool = ledger.pool_account(organization=organization)
    hold(pool, 8)
    assert 'data-testid="over-assigned-banner"' not in _dashboard(admin_client)
    hold(pool, 1)  # 9 of 10: the alert's 90 %
    page = _dashboard(admin_client)
    assert "Assigned credits (9) are close to your 10 credits." in page


def test_managers_see_their_courses_credits_and_learners(
    manager_client, organization, admin, manager
):
    grant(organization, 20)
    level = LevelFactory(credit_cost=1)
    course = level.course
    managed = allocations.manager_register(organization=organization, course=course, user=manager)
    allocations.course_allocate(
        organization=organization, course=course, quantity=10, actor=admin, key="a"
    )
    allocations.manager_assign(manager=managed, quantity=6, actor=admin, key="b")
    invitations.invite(manager=managed, level=level, text="ana@x.test, ben@x.test", token="t")

    page = _dashboard(manager_client)

    assert "Your courses" in page and course.title in page
    assert 'data-testid="managed-available">4<' in page  # 6 assigned, 2 held by invites
    assert 'data-testid="managed-waiting">2<' in page


def test_a_manager_without_a_course_is_told_what_happens_next(manager_client):
    assert "You do not manage a course yet." in _dashboard(manager_client)


def test_learners_see_no_course_figures(learner_client):
    page = _dashboard(learner_client)
    assert "Your courses" not in page and "Credits in the pool" not in page


def test_learners_see_their_training_with_the_next_step(
    learner_client, organization, admin, learner
):
    grant(organization, 5)
    plan = plan_with(organization, admin, emails=[learner.email])
    plan_confirm(plan=plan, user=admin, token="t")
    page = _dashboard(learner_client)
    assert "Your training" in page
    assert "not started yet." in page and 'href="/training/my/"' in page


def test_a_learner_with_nothing_assigned_is_told_so(learner_client):
    assert "No training assigned to you yet." in _dashboard(learner_client)


def test_managers_see_who_is_behind_two_weeks_after_joining(
    manager_client, organization, admin, manager, time_machine
):
    grant(organization, 20)
    level = LevelFactory(credit_cost=1)
    managed = allocations.manager_register(
        organization=organization, course=level.course, user=manager
    )
    allocations.course_allocate(
        organization=organization, course=level.course, quantity=5, actor=admin, key="a"
    )
    allocations.manager_assign(manager=managed, quantity=5, actor=admin, key="b")
    invitations.invite(manager=managed, level=level, text="slow@x.test, quick@x.test", token="t")
    joined = timezone.now() - dt.timedelta(days=15)
    Assignment.objects.filter(email="slow@x.test").update(
        status="started", progress=25, accepted_at=joined
    )
    Assignment.objects.filter(email="quick@x.test").update(
        status="started", progress=75, accepted_at=joined
    )
    page = _dashboard(manager_client)
    assert 'data-testid="managed-behind">1<' in page
    assert "1 learner joined two weeks ago or more and is not half way yet." in page
