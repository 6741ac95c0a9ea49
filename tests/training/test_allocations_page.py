"""The Assign credits page names members by address with suggestions as the admin types,
instead of a <select> of every member under every course."""

import pytest
from django.urls import reverse

from accounts.models import Membership
from tests.accounts.factories import member
from tests.catalog.factories import LevelFactory
from training.models import CourseManager

pytestmark = pytest.mark.django_db


def test_the_page_lists_no_member_and_suggestions_stay_in_the_organization(
    admin_client, organization, outsider
):
    LevelFactory()
    LevelFactory()
    for n in range(15):
        member(organization, Membership.Role.LEARNER, email=f"staff{n:02}@acme.test")
    page = admin_client.get(reverse("training:allocations")).content.decode()
    assert "staff03@acme.test" not in page

    def suggested(text: str) -> str:
        return admin_client.get(
            reverse("training:allocation_members"), {"email": text}, headers={"HX-Request": "1"}
        ).content.decode()

    options = suggested("staff")
    assert options.count("<option") == 10  # a handful, not the directory
    assert 'value="staff00@acme.test"' in options
    assert "outsider@globex.test" not in suggested("outsider")
    assert "<option" not in suggested("")


def test_a_manager_is_registered_by_address_and_an_unknown_one_is_refused(
    admin_client, organization, manager, outsider
):
    level = LevelFactory()
    url = reverse("training:allocation_action")

    refused = admin_client.post(
        url,
        {"action": "register", "course": level.course.pk, "email": outsider.email},
        follow=True,
    )
    assert f"No member of {organization.name} has the address {outsider.email}" in (
        refused.content.decode()
    )
    missing = admin_client.post(url, {"action": "register", "course": level.course.pk}, follow=True)
    assert "Enter the member&#x27;s email address." in missing.content.decode()
    assert not CourseManager.objects.exists()

    admin_client.post(
        url, {"action": "register", "course": level.course.pk, "email": manager.email.upper()}
    )
    assert CourseManager.objects.get().user == manager


def test_a_course_without_credits_shows_a_plain_zero_not_an_alarm(admin_client, organization):
    LevelFactory()
    page = admin_client.get(reverse("training:allocations")).content.decode()
    assert '<span class="" data-testid="course-available">0</span>' in page
    assert "negative" not in page


def test_courses_and_managers_come_a_page_at_a_time(admin_client, organization):
    from tests.catalog.factories import CourseFactory
    from training.allocations import services as allocations

    courses = [CourseFactory(title=f"Course {n:02}", published=True) for n in range(12)]
    for n in range(15):
        person = member(organization, Membership.Role.MANAGER, email=f"m{n:02}@acme.test")
        allocations.manager_register(organization=organization, course=courses[0], user=person)
    url = reverse("training:allocations")

    first = admin_client.get(url).content.decode()
    assert "Course 09" in first and "Course 10" not in first
    assert "m09@acme.test" in first and "m10@acme.test" not in first
    assert f'href="?course={courses[0].pk}"' in first and "All 15 managers" in first

    second = admin_client.get(url, {"page": 2}).content.decode()
    assert "Course 11" in second and "Course 00" not in second

    one = admin_client.get(url, {"course": courses[0].pk}).content.decode()
    assert all(f"m{n:02}@acme.test" in one for n in range(15))
    assert "Course 01" not in one and "Every course" in one
    # Hostile or stale input falls back to the first page rather than an error.
    for query in ({"page": "x"}, {"page": 10**9}, {"course": 2**63}, {"course": "\x00"}):
        assert admin_client.get(url, query).status_code == 200


def test_after_an_action_the_admin_is_back_at_the_course_acted_on(admin_client, organization):
    from tests.catalog.factories import CourseFactory
    from tests.credits.factories import grant

    grant(organization, 10)
    courses = [CourseFactory(title=f"Course {n:02}", published=True) for n in range(12)]
    last = courses[-1]  # on the second page of courses
    response = admin_client.post(
        reverse("training:allocation_action"),
        {"action": "allocate", "course": last.pk, "quantity": 3},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == f"{reverse('training:allocations')}?course={last.pk}"
    page = response.content.decode()
    assert "3 credits moved for" in page and "Course 11" in page and "Course 00" not in page
