import pytest
from django.urls import reverse

from credits import selectors
from tests.credits.factories import grant
from tests.training.factories import confirm_form, plan_with
from training.models import Enrollment
from training.plans.services import plan_confirm

pytestmark = pytest.mark.django_db


def test_confirm_short_sends_the_admin_to_buy_the_exact_shortfall_and_back(
    admin_client, organization, admin
):
    grant(organization, 1)
    plan = plan_with(organization, admin, emails=["a@acme.test", "b@acme.test", "c@acme.test"])
    url = reverse("training:confirm", args=[plan.pk])
    plan_url = reverse("training:plan", args=[plan.pk])
    response = admin_client.post(url, confirm_form(plan), headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == f"/billing/add-credits/?need=2&next={plan_url}"
    plain = admin_client.post(url, confirm_form(plan))
    assert plain["Location"] == f"/billing/add-credits/?need=2&next={plan_url}"
    assert selectors.organization_balance(organization=organization).total == 1


def test_plan_page_shows_cost_against_balance_and_confirms_over_htmx(
    admin_client, organization, admin
):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["a@acme.test"], costs=(2,))
    page = admin_client.get(reverse("training:plan", args=[plan.pk])).content.decode()
    assert "1 person to confirm, in seats worth <strong>2</strong> credits." in page
    body = admin_client.post(
        reverse("training:confirm", args=[plan.pk]),
        confirm_form(plan),
        headers={"HX-Request": "true", "HX-Target": "plan-body"},
    ).content.decode()
    assert "1 person confirmed; they are getting their email." in body
    assert 'data-testid="plan-status">Confirmed<' in body
    assert selectors.organization_balance(organization=organization).total == 8


def test_adding_people_lists_bad_rows(admin_client, organization, admin):
    plan = plan_with(organization, admin)
    response = admin_client.post(
        reverse("training:participants_add", args=[plan.pk]),
        {"emails": "ok@acme.test, broken"},
        follow=True,
    )
    page = response.content.decode()
    assert "Added 1 person." in page and "Not added: “broken” (not an email address)." in page


def test_a_learner_starts_from_my_training(learner_client, organization, admin, learner):
    organization.redemption_point = "start"
    organization.save()
    grant(organization, 5)
    plan = plan_with(organization, admin, emails=[learner.email])
    plan_confirm(plan=plan, user=admin, token="t")
    page = learner_client.get(reverse("training:my_training")).content.decode()
    assert "Assigned" in page
    enrollment = Enrollment.objects.get()
    learner_client.post(reverse("training:enrollment_start", args=[enrollment.pk]))
    learner_client.post(
        reverse("training:enrollment_progress", args=[enrollment.pk]), {"progress": 100}
    )
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.progress) == ("completed", 100)
    assert selectors.organization_balance(organization=organization).total == 4


def test_an_invited_address_accepts_and_becomes_a_learner(client, organization, admin):
    plan = plan_with(organization, admin, emails=["new.hire@acme.test"])
    person = plan.participants.get()
    url = reverse("training:join", args=[person.invite_token])
    assert b"Choose a password" in client.get(url).content
    response = client.post(url, {"password": "a-long-enough-passphrase"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("training:my_training")
    person.refresh_from_db()
    assert person.user.memberships.get().role == "learner"


def test_managers_and_learners_cannot_open_plans(manager_client, learner_client):
    for client in (manager_client, learner_client):
        assert client.get(reverse("training:plans")).status_code == 403


def test_the_plans_list_is_pages_newest_first_with_every_plan_on_exactly_one(
    admin_client, organization, admin, other_organization, outsider
):
    import datetime as dt

    import time_machine

    from training.models import TrainingPlan

    start = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)
    # 27 plans, two of them made in the same instant (the id orders those).
    for n in range(27):
        with time_machine.travel(start + dt.timedelta(days=min(n, 25)), tick=False):
            TrainingPlan.objects.create(
                organization=organization,
                name=f"Plan {n:02}",
                start_date=start.date(),
                created_by=admin,
            )
    TrainingPlan.objects.create(
        organization=other_organization,
        name="Globex plan",
        start_date=start.date(),
        created_by=outsider,
    )
    url = reverse("training:plans")
    first = admin_client.get(url).content.decode()
    second = admin_client.get(url, {"page": 2}).content.decode()
    names = [f"Plan {n:02}" for n in range(27)]
    assert [name for name in names if name in first] == names[2:]
    assert [name for name in names if name in second] == names[:2]
    assert first.index("Plan 26") < first.index("Plan 25") < first.index("Plan 02")
    assert "Plans 1\u201325 of 27" in first and 'href="?page=2"' in first
    assert "Globex plan" not in first + second
    for hostile in ("x", "0", str(2**31), "\x00", "9" * 10_000):
        response = admin_client.get(url, {"page": hostile})
        assert response.status_code == 200 and "Plan 26" in response.content.decode()


def test_the_plans_list_says_what_to_do_when_there_is_none(admin_client):
    page = admin_client.get(reverse("training:plans")).content.decode()
    assert "No training plans yet." in page and "Choose courses in the catalog" in page
