"""The plan page at the size of a real company: the People list in pages with a search and a
status filter, a member picker that searches instead of listing everyone, Remove selected,
and the figures beside Confirm users."""

import re

import pytest
from django.urls import reverse

from accounts.models import Membership
from credits import selectors
from tests.accounts.factories import member
from tests.credits.factories import grant
from tests.training.factories import confirm_form, plan_with
from training.learner.services import enrollment_start
from training.models import Enrollment, Participant
from training.plans.services import plan_confirm

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Target": "plan-body"}


def _emails(count: int, prefix: str = "p") -> list[str]:
    return [f"{prefix}{n:04}@acme.test" for n in range(count)]


def _rows(page: str) -> list[str]:
    """The addresses listed in the People table, in order."""
    return re.findall(r'data-testid="participant">\s*<td>.*?</td>\s*<td>([^<\s]+)', page, re.S)


def _page(client, plan, **query) -> str:
    return client.get(reverse("training:plan", args=[plan.pk]), query).content.decode()


def test_a_plan_of_120_people_is_listed_50_at_a_time_with_links_that_work_without_script(
    admin_client, organization, admin
):
    plan = plan_with(organization, admin, emails=_emails(120))

    first = _page(admin_client, plan)
    assert _rows(first) == _emails(120)[:50]
    assert "People 1\N{EN DASH}50 of 120" in first
    assert 'href="?page=2"' in first  # a real link, beside its hx-get

    last = _page(admin_client, plan, page=3)
    assert _rows(last) == _emails(120)[100:]
    assert 'href="?page=2"' in last and "Next →" not in last
    # A page past the end shows the last one rather than failing.
    assert _rows(_page(admin_client, plan, page=99)) == _emails(120)[100:]


def test_search_and_status_filter_narrow_the_list_and_say_when_nothing_matches(
    admin_client, organization, admin
):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["ana@acme.test", "ben@acme.test"])
    plan_confirm(plan=plan, user=admin, token="t")
    Participant.objects.create(plan=plan, email="cy@acme.test")

    assert _rows(_page(admin_client, plan, q="BEN")) == ["ben@acme.test"]
    assert _rows(_page(admin_client, plan, status="pending")) == ["cy@acme.test"]
    assert _rows(_page(admin_client, plan, status="confirmed")) == [
        "ana@acme.test",
        "ben@acme.test",
    ]
    nothing = _page(admin_client, plan, q="zed")
    assert _rows(nothing) == []
    assert "No one in this plan matches" in nothing
    # The search keeps the filter in the page links and in the htmx partial.
    partial = admin_client.get(
        reverse("training:plan", args=[plan.pk]),
        {"q": "ben"},
        headers={"HX-Request": "true", "HX-Target": "people"},
    ).content.decode()
    assert partial.lstrip().startswith('<section aria-labelledby="people-heading" id="people">')
    assert _rows(partial) == ["ben@acme.test"]


def test_the_page_lists_no_member_until_searched_and_the_search_shows_twenty_at_most(
    admin_client, organization, admin
):
    for n in range(30):
        member(organization, Membership.Role.LEARNER, email=f"staff{n:02}@acme.test")
    plan = plan_with(organization, admin, emails=["staff00@acme.test"])

    page = _page(admin_client, plan)
    assert "staff05@acme.test" not in page

    found = admin_client.get(
        reverse("training:member_search", args=[plan.pk]),
        {"member_q": "staff"},
        headers={"HX-Request": "true"},
    ).content.decode()
    ticks = re.findall(r'name="members" value="([^"]+)"', found)
    assert len(ticks) == 20
    assert "staff00@acme.test" not in ticks  # already in the plan
    assert all('form="add-people"' in tag for tag in re.findall(r"<input[^>]+>", found))
    # Without script, the same search on the plan page itself.
    assert "staff07@acme.test" in _page(admin_client, plan, member_q="staff07")


def test_ticked_members_are_added_and_a_non_member_tick_is_refused(
    admin_client, organization, admin, outsider
):
    colleague = member(organization, Membership.Role.LEARNER, email="col@acme.test")
    plan = plan_with(organization, admin)
    url = reverse("training:participants_add", args=[plan.pk])

    refused = admin_client.post(url, {"members": [outsider.email]}, follow=True)
    assert "no longer a member of this organization" in refused.content.decode()
    assert not plan.participants.exists()

    admin_client.post(url, {"members": [colleague.email]})
    assert list(plan.participants.values_list("email", flat=True)) == [colleague.email]


def test_remove_selected_frees_held_credits_and_a_started_learner_holds_back_no_one(
    admin_client, organization, admin, learner
):
    organization.redemption_point = "start"
    organization.save()
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=[learner.email, "a@acme.test", "b@acme.test"])
    plan_confirm(plan=plan, user=admin, token="t")
    started = Enrollment.objects.get(participant__email=learner.email)
    enrollment_start(enrollment=started, user=learner)
    assert selectors.organization_balance(organization=organization).available == 7

    people = {p.email: p.pk for p in plan.participants.all()}
    body = admin_client.post(
        reverse("training:participants_remove", args=[plan.pk]),
        {"participants": list(people.values())},
        headers=HTMX,
    ).content.decode()

    assert "Removed 2 people." in body
    assert f"{learner.email} has started: they can no longer be removed." in body
    removed = plan.participants.filter(removed_at__isnull=False).values_list("email", flat=True)
    assert set(removed) == {"a@acme.test", "b@acme.test"}
    # Their holds are released; the learner who started keeps the one credit captured.
    balance = selectors.organization_balance(organization=organization)
    assert (balance.total, balance.available) == (9, 9)


def test_remove_selected_ignores_people_of_another_organizations_plan(
    admin_client, organization, admin, other_organization, outsider
):
    mine = plan_with(organization, admin, emails=["a@acme.test"])
    theirs = plan_with(other_organization, outsider, emails=["x@globex.test"])
    stranger = theirs.participants.get()

    admin_client.post(
        reverse("training:participants_remove", args=[mine.pk]),
        {"participants": [stranger.pk]},
    )

    stranger.refresh_from_db()
    assert stranger.removed_at is None
    assert mine.participants.get().removed_at is None


@pytest.mark.parametrize("ticked", [[], ["abc"], ["-1"], [str(2**63)], ["1"] * 201])
def test_remove_selected_with_nothing_sensible_ticked_says_so(
    admin_client, organization, admin, ticked
):
    plan = plan_with(organization, admin, emails=["a@acme.test"])
    response = admin_client.post(
        reverse("training:participants_remove", args=[plan.pk]),
        {"participants": ticked},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Tick the people to remove first." in page or "Everyone ticked" in page
    assert plan.participants.get().removed_at is None


def test_a_remove_answers_with_the_list_as_it_was_filtered(admin_client, organization, admin):
    plan = plan_with(organization, admin, emails=["ana@acme.test", "ben@acme.test", "bo@acme.test"])
    ana = plan.participants.get(email="ana@acme.test")
    body = admin_client.post(
        reverse("training:participant_remove", args=[plan.pk, ana.pk]),
        {"q": "b"},
        headers=HTMX,
    ).content.decode()
    assert _rows(body) == ["ben@acme.test", "bo@acme.test"]
    assert 'value="b"' in body  # the search box still holds what was typed


def test_the_summary_beside_confirm_shows_people_cost_available_and_the_shortfall(
    admin_client, organization, admin
):
    grant(organization, 2)
    plan = plan_with(organization, admin, emails=_emails(3), costs=(1, 2))
    page = _page(admin_client, plan)
    summary = page[page.index('data-testid="plan-summary"') : page.index("</aside>")]
    assert 'data-testid="summary-people">3<' in summary
    assert 'data-testid="summary-cost">9 credits<' in summary
    assert 'data-testid="plan-available">2<' in summary
    assert 'data-testid="summary-short">7<' in summary
    assert 'data-testid="confirm-users"' in summary
    # Confirming from the summary still takes exactly what it shows.
    grant(organization, 7)
    admin_client.post(reverse("training:confirm", args=[plan.pk]), confirm_form(plan))
    assert selectors.organization_balance(organization=organization).total == 0


def test_a_plan_of_1000_people_is_a_page_of_under_200_kb(admin_client, organization, admin):
    plan = plan_with(organization, admin, emails=_emails(1_000, prefix="person"), costs=(1, 2))
    page = admin_client.get(reverse("training:plan", args=[plan.pk])).content
    assert len(page) < 200 * 1024, len(page)
    assert "People 1\N{EN DASH}50 of 1,000" in page.decode()
