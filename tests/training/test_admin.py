import datetime as dt
import uuid

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from credits import selectors
from tests.accounts.factories import UserFactory
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.training.factories import plan_with
from training.models import Enrollment
from training.services import plan_confirm

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
