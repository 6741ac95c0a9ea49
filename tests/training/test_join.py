"""A training plan's invitation link: only a POST joins; closed plans and removed people are
told so; account, membership and place in the plan are created together or not at all."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, User
from tests.accounts.factories import UserFactory
from tests.support.threads import run_threads
from tests.training.factories import plan_with
from training.models import Participant, TrainingPlan

PASSWORD = "a-long-enough-passphrase"
EMAIL = "new.hire@acme.test"

pytestmark = pytest.mark.django_db


def join_url(person: Participant) -> str:
    return reverse("training:join", args=[person.invite_token])


@pytest.fixture
def person(organization, admin) -> Participant:
    return plan_with(organization, admin, emails=[EMAIL]).participants.get()


def test_opening_the_link_signed_in_joins_nothing_until_the_button_is_pressed(organization, person):
    account = UserFactory(email=EMAIL)  # an account elsewhere, not a member here yet
    client = Client()
    client.force_login(account)
    page = client.get(join_url(person))
    assert page.status_code == 200
    assert "Join the plan" in page.content.decode()
    person.refresh_from_db()
    assert person.user is None
    assert not Membership.objects.filter(user=account).exists()

    response = client.post(join_url(person))
    assert response["Location"] == reverse("training:my_training")
    person.refresh_from_db()
    assert person.user == account
    assert Membership.objects.get(user=account, organization=organization).role == "learner"


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (TrainingPlan.Status.CANCELLED, "was cancelled"),
        (TrainingPlan.Status.COMPLETED, "completed"),
    ],
)
def test_a_closed_plan_refuses_to_join_and_creates_no_account(client, person, status, says):
    TrainingPlan.objects.filter(pk=person.plan_id).update(status=status)
    page = client.get(join_url(person))
    assert page.status_code == 410
    assert says in page.content.decode()
    assert 'name="password"' not in page.content.decode()
    response = client.post(join_url(person), {"password": PASSWORD})
    assert response.status_code == 410
    assert not User.objects.filter(email=EMAIL).exists()


def test_a_closed_plan_refuses_a_signed_in_learner_too(person):
    account = UserFactory(email=EMAIL)
    TrainingPlan.objects.filter(pk=person.plan_id).update(status=TrainingPlan.Status.CANCELLED)
    client = Client()
    client.force_login(account)
    assert client.get(join_url(person)).status_code == 410
    assert client.post(join_url(person)).status_code == 410
    person.refresh_from_db()
    assert person.user is None
    assert not Membership.objects.filter(user=account).exists()


def test_a_removed_participant_is_told_so(client, person):
    Participant.objects.filter(pk=person.pk).update(removed_at=timezone.now())
    page = client.get(join_url(person))
    assert page.status_code == 410
    assert "You were removed from the training plan Onboarding" in page.content.decode()
    assert client.post(join_url(person), {"password": PASSWORD}).status_code == 410
    assert not User.objects.filter(email=EMAIL).exists()


def test_a_used_link_asks_to_sign_in_and_the_second_tab_is_told(person):
    first, second = Client(), Client()
    assert second.get(join_url(person)).status_code == 200  # both tabs show the form
    assert first.post(join_url(person), {"password": PASSWORD}).status_code == 302
    response = second.post(join_url(person), {"password": PASSWORD})
    assert response.status_code == 409
    assert "already accepted" in response.content.decode()
    later = Client().get(join_url(person))
    assert later.status_code == 409
    assert "Sign in" in later.content.decode()
    # The person who joined opens it again: straight to their training.
    assert first.get(join_url(person))["Location"] == reverse("training:my_training")
    assert User.objects.filter(email=EMAIL).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_tabs_joining_with_a_password_at_once_make_one_account(organization, admin):
    rounds = 5  # a race is a matter of timing: several make a collision all but certain
    plan = plan_with(organization, admin, emails=[f"tab{n}@acme.test" for n in range(rounds)])
    for person in plan.participants.all():
        clients = [Client(), Client()]

        def post(n: int, person=person, clients=clients):
            response = clients[n].post(join_url(person), {"password": PASSWORD})
            return response.status_code, response.get("Location", "")

        results = run_threads(2, post)
        assert all(status < 500 for status, _ in results)
        assert [where for _, where in results].count(reverse("training:my_training")) == 1
        (account,) = User.objects.filter(email=person.email)
        person.refresh_from_db()
        assert person.user == account
        assert Membership.objects.get(user=account).role == "learner"


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("x" * 129, "at most 128 characters"),
        (PASSWORD + "\x00", "Null characters are not allowed."),
        ("", "Choose a password."),
    ],
)
def test_odd_passwords_are_form_errors_and_create_nothing(client, person, password, says):
    response = client.post(join_url(person), {"password": password})
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not User.objects.filter(email=EMAIL).exists()
