"""The dashboard each role lands on: admins are warned before assigned credits pass their
credits (not only by email); managers see their own courses, credits and learners."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from credits import services as ledger
from credits import tasks as credit_tasks
from credits.models import StoredForecast
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


# --- The forecast: what beat stored, never computed by the page -----------------------------


def _stored_forecast(organization, **fields):
    values = {
        "computed_at": dt.datetime(2026, 7, 1, 14, 35, tzinfo=dt.UTC),
        "enough_history": True,
        "daily_rate": 2.5,
        "runs_out_on": dt.date(2026, 9, 3),
        "expires_unused": 12,
        "points": [["2026-07-01", 200], ["2026-07-08", 182], ["2026-07-15", 0]],
    }
    return StoredForecast.objects.create(organization=organization, **{**values, **fields})


@pytest.fixture
def queued(monkeypatch):
    """The refreshes the dashboard queues, kept instead of run (tests run tasks eagerly)."""
    calls = []
    monkeypatch.setattr(credit_tasks.forecast_refresh, "delay", calls.append)
    return calls


def test_admins_see_the_stored_forecast_and_when_it_was_computed(
    admin_client, organization, queued
):
    # The ledger says nothing of this: what shows is the stored row, read in one query.
    _stored_forecast(organization)
    with CaptureQueriesContext(connection) as queries:
        page = _dashboard(admin_client)
    assert "At this rate (2.5 credits a day over the last 90 days)" in page
    assert "your credits run out on <strong>Sep 3, 2026</strong>" in page
    assert "<strong>12</strong> credits expire unused before then" in page
    assert 'points="0.0,0.0 300.0,10.8 600.0,120.0"' in page
    # 14:35 UTC in the admin's zone (the organization's, New York).
    assert "Updated hourly, last on Jul 1, 2026, 10:35 AM (America/New_York)." in page
    assert "Its days are" not in page
    forecast_reads = [q["sql"] for q in queries if "credits_storedforecast" in q["sql"]]
    assert len(forecast_reads) == 1
    assert not [q["sql"] for q in queries if "credits_ledgerentry" in q["sql"]]
    assert not [q["sql"] for q in queries if "credits_dailytotal" in q["sql"]]
    assert queued == []


def test_the_time_is_the_viewers_and_the_days_are_said_to_be_the_organizations(
    admin_client, admin, organization, queued
):
    admin.time_zone = "Asia/Tokyo"
    admin.save()
    _stored_forecast(organization)
    page = _dashboard(admin_client)
    assert "last on Jul 1, 2026, 11:35 PM (Asia/Tokyo)." in page
    assert "Its days are Acme Corp's (America/New_York)." in page


def test_too_little_history_as_stored(admin_client, organization, queued):
    _stored_forecast(organization, enough_history=False, runs_out_on=None, points=[])
    page = _dashboard(admin_client)
    assert "Too little history to forecast yet" in page
    assert queued == []


def test_without_a_stored_forecast_it_is_being_prepared_and_asked_for_once(
    admin_client, organization, queued
):
    grant(organization, 10)
    for _ in range(3):
        page = _dashboard(admin_client)
        assert "The forecast is being prepared. It is updated hourly" in page
        assert 'data-testid="forecast"' not in page
    assert queued == [organization.pk]
    # Once the queued task has run, the page shows what it stored.
    credit_tasks.forecast_refresh(organization.pk)
    page = _dashboard(admin_client)
    assert "being prepared" not in page and "Too little history to forecast yet" in page


def test_being_prepared_while_the_broker_is_down(admin_client, organization, monkeypatch):
    def broker_gone(organization_id):
        raise ConnectionError("no broker")

    monkeypatch.setattr(credit_tasks.forecast_refresh, "delay", broker_gone)
    response = admin_client.get(reverse("dashboard"))
    assert response.status_code == 200
    assert "The forecast is being prepared" in response.content.decode()
    assert not StoredForecast.objects.exists()


def test_managers_and_learners_ask_for_no_forecast(manager_client, learner_client, queued):
    _dashboard(manager_client)
    _dashboard(learner_client)
    assert queued == []
