import datetime as dt
import uuid

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from credits import selectors
from tests.accounts.factories import UserFactory
from tests.catalog.factories import CourseFactory, LevelFactory
from tests.credits.factories import grant
from tests.support.admin_forms import post_change
from tests.support.admin_lists import (
    assert_opens_filtered_or_not,
    large_table_models,
    open_list,
    whole_table_reads,
)
from tests.training.factories import plan_with
from training.models import CourseManager, Enrollment, TrainingPlan
from training.plans.services import plan_confirm

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:training_enrollment_changelist")


@pytest.fixture
def enrollment(organization, admin):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["a@acme.test"], start=timezone.localdate())
    plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()))
    return Enrollment.objects.get()


@pytest.fixture
def support(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def change(support, enrollment, level, reason="placement"):
    return support.post(
        CHANGELIST,
        {
            "action": "change_level",
            "_selected_action": [enrollment.pk],
            "apply": "1",
            "level": level.pk,
            "reason": reason,
        },
        follow=True,
    )


def test_support_changes_the_level_in_the_admin_and_the_cheaper_level_returns_credits(
    support, organization, enrollment
):
    form = support.post(CHANGELIST, {"action": "change_level", "_selected_action": [enrollment.pk]})
    assert b"Change the level of" in form.content
    cheaper = LevelFactory(course=enrollment.level.course, credit_cost=1)
    dearer = LevelFactory(course=enrollment.level.course, credit_cost=4)
    response = change(support, enrollment, dearer)
    assert b"moved to" in response.content
    assert selectors.organization_balance(organization=organization).total == 6
    enrollment.refresh_from_db()
    response = change(support, enrollment, cheaper, reason="too hard")
    assert selectors.organization_balance(organization=organization).total == 9


def test_after_7_days_the_admin_says_it_is_too_late(support, organization, enrollment):
    other = LevelFactory(course=enrollment.level.course, credit_cost=2)
    with time_machine.travel(timezone.now() + dt.timedelta(days=8, hours=12)):
        response = change(support, enrollment, other)
    assert b"this one is too late" in response.content
    assert selectors.organization_balance(organization=organization).total == 9


# --- Who a row belongs to is fixed once it exists ------------------------------------------


@pytest.fixture
def globex_plan(other_organization, outsider):
    return plan_with(other_organization, outsider, emails=[outsider.email])


def test_a_saved_plan_keeps_its_organization(support, organization, other_organization, admin):
    plan = plan_with(organization, admin, emails=["a@acme.test"])
    response = post_change(support, plan, organization=other_organization.pk, name="Renamed")
    assert response.status_code == 302
    plan.refresh_from_db()
    assert (plan.organization, plan.name) == (organization, "Renamed")


def test_a_saved_plan_item_keeps_its_plan_level_and_seats(
    support, organization, admin, globex_plan
):
    # Seats and level are what Confirm users charged for: changed on the plan page (never
    # below the people in them) or by the audited level change, not by editing the row.
    plan = plan_with(organization, admin, emails=["a@acme.test", "b@acme.test"])
    item = plan.items.get()
    dearer = LevelFactory(course=item.level.course, credit_cost=9)
    response = post_change(support, item, plan=globex_plan.pk, seats=0, level=dearer.pk)
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.plan, item.seats) == (plan, 2)
    assert item.level != dearer


def test_a_saved_participant_keeps_its_plan_and_user(
    support, organization, admin, learner, outsider, globex_plan
):
    plan = plan_with(organization, admin, emails=[learner.email])
    participant = plan.participants.get()
    assert participant.user == learner
    response = post_change(
        support, participant, plan=globex_plan.pk, user=outsider.pk, email="b@acme.test"
    )
    assert response.status_code == 302
    participant.refresh_from_db()
    assert (participant.plan, participant.user, participant.email) == (
        plan,
        learner,
        learner.email,  # the address the participant's join link belongs to
    )
    assert list(globex_plan.participants.values_list("email", flat=True)) == [outsider.email]


def test_support_names_a_course_manager_on_add_and_cannot_move_it_afterwards(
    support, organization, other_organization, manager, outsider
):
    course, other_course = CourseFactory(), CourseFactory()
    added = support.post(
        reverse("admin:training_coursemanager_add"),
        {"organization": organization.pk, "course": course.pk, "user": manager.pk},
    )
    assert added.status_code == 302
    row = CourseManager.objects.get()
    assert (row.organization, row.course, row.user) == (organization, course, manager)

    response = post_change(
        support,
        row,
        organization=other_organization.pk,
        course=other_course.pk,
        user=outsider.pk,
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.organization, row.course, row.user) == (organization, course, manager)


# --- Lists that grow with history cost a page ----------------------------------------------


@pytest.mark.parametrize("model", large_table_models("training"), ids=lambda m: m.__name__)
def test_support_opens_each_training_list_without_reading_whole_tables(
    support, organization, other_organization, admin, outsider, manager, enrollment, model
):
    # Besides the enrollment's confirmed plan: another organization's plan, a course manager
    # and a level change, so that every list has rows of more than one organization.
    plan_with(other_organization, outsider, emails=["x@globex.test"])
    CourseManager.objects.create(organization=organization, course=CourseFactory(), user=manager)
    dearer = LevelFactory(course=enrollment.level.course, credit_cost=2)
    change(support, enrollment, dearer)
    assert_opens_filtered_or_not(support, model, organization)


def test_the_plan_list_filters_by_organization_without_listing_them(
    support, organization, other_organization, admin, outsider
):
    ours = plan_with(organization, admin, emails=["a@acme.test"])
    plan_with(other_organization, outsider, emails=["x@globex.test"])
    response, queries = open_list(support, TrainingPlan, {"organization": organization.pk})
    assert list(response.context["cl"].result_list) == [ours]
    assert whole_table_reads(queries, TrainingPlan) == []
