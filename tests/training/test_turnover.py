"""Seat turnover (issue 18, part 3): Replace learner moves a seat with its credits and never
frees or charges them, under any number of simultaneous clicks; reminders to start go once
each at 3 and 7 days; admins see who has not started for two weeks."""

import datetime as dt

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from credits import selectors
from credits.audit import ledger_audit
from credits.models import Hold
from outbox.models import OutboxMessage
from tests.credits.factories import grant
from tests.support.threads import run_threads
from tests.training.factories import plan_with
from training.models import Enrollment, Participant
from training.plans import turnover
from training.plans.services import PlanRefused, plan_confirm

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _audit():
    yield
    report = ledger_audit()
    assert report.ok, report.violations


@pytest.fixture(params=["start", "confirm"])
def policy(request, organization):
    organization.redemption_point = request.param
    organization.save()
    return request.param


def confirmed_plan(organization, admin, emails=("ana@acme.test",), costs=(2,)):
    grant(organization, 20)
    plan = plan_with(organization, admin, emails=list(emails), costs=costs)
    plan_confirm(plan=plan, user=admin, token="t")
    return plan


def test_replace_moves_the_seat_and_its_credits_without_freeing_or_charging_them(
    organization, admin, policy, mailoutbox, django_capture_on_commit_callbacks
):
    plan = confirmed_plan(organization, admin, costs=(2, 3))
    before = selectors.organization_balance(organization=organization)
    holds = set(Hold.objects.values_list("pk", "status"))
    ana = plan.participants.get(email="ana@acme.test")
    with django_capture_on_commit_callbacks(execute=True):
        ben = turnover.participant_replace(participant=ana, email=" BEN@acme.test ", user=admin)
    assert ben.email == "ben@acme.test" and ben.confirmed_at is not None
    ana.refresh_from_db()
    assert ana.removed_at is not None
    assert sorted(e.cost for e in Enrollment.objects.filter(participant=ben)) == [2, 3]
    assert not Enrollment.objects.filter(participant=ana).exists()
    after = selectors.organization_balance(organization=organization)
    assert (after.total, after.held) == (before.total, before.held)
    assert set(Hold.objects.values_list("pk", "status")) == holds  # the same holds, still held
    assert [m.to for m in mailoutbox] == [["ben@acme.test"]]


def test_replace_refuses_what_would_free_or_double_a_seat(organization, admin):
    organization.redemption_point = "start"
    organization.save()
    plan = confirmed_plan(organization, admin, emails=("ana@acme.test", "cy@acme.test"))
    ana = plan.participants.get(email="ana@acme.test")
    for email, says in [
        ("not an address", "Enter the email address"),
        ("ana@acme.test", "already has this seat"),
        ("cy@acme.test", "already in this plan"),
        ("x" * 300 + "@acme.test", "Enter the email address"),
    ]:
        with pytest.raises(PlanRefused, match=says):
            turnover.participant_replace(participant=ana, email=email, user=admin)
    started = Enrollment.objects.get(participant__email="cy@acme.test")
    started.start()
    started.save()
    with pytest.raises(PlanRefused, match="has started"):
        turnover.participant_replace(
            participant=started.participant, email="dee@acme.test", user=admin
        )
    turnover.participant_replace(participant=ana, email="ben@acme.test", user=admin)
    with pytest.raises(PlanRefused, match="no longer in this plan"):
        turnover.participant_replace(participant=ana, email="eve@acme.test", user=admin)


@pytest.mark.django_db(transaction=True)
def test_sixteen_simultaneous_replaces_of_one_seat_move_it_once(organization, admin):
    organization.redemption_point = "start"
    organization.save()
    plan = confirmed_plan(organization, admin)
    for round_ in range(3):
        holder = plan.participants.get(removed_at__isnull=True)
        held = selectors.organization_balance(organization=organization).held

        def replace(n: int, holder=holder, round_=round_) -> str:
            try:
                turnover.participant_replace(
                    participant=holder, email=f"r{round_}-{n}@acme.test", user=admin
                )
            except PlanRefused:
                return "refused"
            return "moved"

        assert run_threads(16, replace).count("moved") == 1
        (seat,) = Enrollment.objects.exclude(status="removed")
        assert seat.participant.removed_at is None and seat.participant != holder
        assert Hold.objects.filter(status="active").count() == 1
        assert selectors.organization_balance(organization=organization).held == held
    assert Participant.objects.filter(removed_at__isnull=True).count() == 1


def test_reminders_go_at_3_and_7_days_once_each_and_stop_once_started(organization, admin):
    given = timezone.now()
    with time_machine.travel(given, tick=False):
        confirmed_plan(organization, admin, emails=("ana@acme.test", "ben@acme.test"))

    def reminders() -> list[tuple[str, str]]:
        return sorted(
            (m.recipient, m.key.split("|")[0].rsplit(":", 1)[1])
            for m in OutboxMessage.objects.filter(kind=turnover.REMINDER)
        )

    for hours in (1, 24 * 2):
        assert turnover.start_reminders_send(now=given + dt.timedelta(hours=hours)) == 0
    for _ in range(2):  # delivered twice, or the next hour's run: once each
        turnover.start_reminders_send(now=given + dt.timedelta(days=3, hours=1))
    assert reminders() == [("ana@acme.test", "3"), ("ben@acme.test", "3")]
    started = Enrollment.objects.get(participant__email="ben@acme.test")
    started.start()
    started.save()
    turnover.start_reminders_send(now=given + dt.timedelta(days=7, hours=1))
    turnover.start_reminders_send(now=given + dt.timedelta(days=7, hours=2))
    assert reminders() == [("ana@acme.test", "3"), ("ana@acme.test", "7"), ("ben@acme.test", "3")]
    # Two days past a reminder's day, it is not sent late.
    turnover.start_reminders_send(now=given + dt.timedelta(days=30))
    assert len(reminders()) == 3


def test_the_not_started_page_lists_two_week_old_seats_and_replaces_from_there(
    organization, admin, admin_client, outsider, other_organization
):
    organization.redemption_point = "start"
    organization.save()
    with time_machine.travel(timezone.now() - dt.timedelta(days=15)):
        old = confirmed_plan(organization, admin, emails=("ana@acme.test",))
        grant(other_organization, 5)
        theirs = plan_with(other_organization, outsider, emails=["zed@globex.test"])
        plan_confirm(plan=theirs, user=outsider, token="t")
    plan_with(organization, admin, emails=["new@acme.test"])  # confirmed or not, too recent
    url = reverse("training:not_started")
    page = admin_client.get(url).content.decode()
    assert page.count('data-testid="not-started"') == 1 and "ana@acme.test" in page
    assert "zed@globex.test" not in page

    ana = old.participants.get(email="ana@acme.test")
    replace = reverse("training:participant_replace", args=[old.pk, ana.pk])
    for email, says in [("", "Enter the email address"), ("a\x00b", "NUL")]:
        response = admin_client.post(replace, {"email": email, "back": "not_started"}, follow=True)
        assert response.status_code == 200 and says in response.content.decode()
    done = admin_client.post(
        replace, {"email": "ben@acme.test", "back": "not_started"}, follow=True
    )
    assert done.redirect_chain[-1][0] == url
    assert "ana@acme.test&#x27;s seat is now ben@acme.test&#x27;s" in done.content.decode()
    # The seat was given again just now: off the two-week list.
    assert 'data-testid="not-started"' not in done.content.decode()
    assert "Everyone given a seat two weeks ago or more has started" in done.content.decode()
    foreign = reverse("training:participant_replace", args=[theirs.pk, ana.pk])
    assert admin_client.post(foreign, {"email": "x@acme.test"}).status_code == 404


# --- A manager's pending invitations ------------------------------------------------------


def _invitation(organization, admin, manager, email="ana@x.test"):
    from tests.training.test_invitations import _course, invite

    managed, level = _course(organization, admin, manager)
    (sent,), _ = invite(managed, level, email)
    return managed, sent


def test_replacing_an_invitation_moves_its_hold_and_kills_the_old_link(
    organization, admin, manager, client, mailoutbox, django_capture_on_commit_callbacks
):
    from training.invitations import services as invitations

    _, sent = _invitation(organization, admin, manager)
    hold, old_token = sent.hold_id, sent.token
    with django_capture_on_commit_callbacks(execute=True):
        moved = invitations.invitation_replace(
            assignment=sent, email="BEN@x.test", expected_email="ana@x.test"
        )
    assert (moved.email, moved.hold_id, moved.status) == ("ben@x.test", hold, "invited")
    assert Hold.objects.get(pk=hold).status == "active"
    assert [m.to for m in mailoutbox] == [["ben@x.test"]]
    old = client.get(reverse("training:accept", args=[old_token])).content.decode()
    assert "replaced by a newer one" in old
    with pytest.raises(invitations.InvitationRefused, match=r"given to ben@x\.test meanwhile"):
        invitations.invitation_replace(
            assignment=sent, email="cy@x.test", expected_email="ana@x.test"
        )


@pytest.mark.django_db(transaction=True)
def test_sixteen_simultaneous_replaces_of_one_invitation_move_it_once(organization, admin, manager):
    from training.invitations import services as invitations
    from training.models import Assignment

    _, sent = _invitation(organization, admin, manager)

    def replace(n: int) -> str:
        try:
            invitations.invitation_replace(
                assignment=sent, email=f"r{n}@x.test", expected_email="ana@x.test"
            )
        except invitations.InvitationRefused:
            return "refused"
        return "moved"

    assert run_threads(16, replace).count("moved") == 1
    (pending,) = Assignment.objects.filter(status="invited")
    assert pending.email.startswith("r") and pending.hold_id == sent.hold_id
    assert Hold.objects.filter(status="active").count() == 1


def test_pending_invitations_are_reminded_and_listed_after_two_weeks(
    organization, admin, manager, manager_client
):
    given = timezone.now() - dt.timedelta(days=15)
    with time_machine.travel(given, tick=False):
        managed, sent = _invitation(organization, admin, manager)
    turnover.start_reminders_send(now=given + dt.timedelta(days=3, hours=1))
    turnover.start_reminders_send(now=given + dt.timedelta(days=3, hours=2))
    (reminder,) = OutboxMessage.objects.filter(kind=turnover.REMINDER)
    assert reminder.recipient == "ana@x.test" and str(sent.token) in reminder.text
    url = reverse("training:managed_course", args=[managed.pk])
    stale = manager_client.get(url, {"stale": "1"}).content.decode()
    assert stale.count('data-testid="invitation"') == 1
    replace = reverse("training:invitation_replace", args=[sent.pk])
    for fields, says in [
        ({"email": "", "expected": "ana@x.test"}, "Enter the email address"),
        ({"email": "x\x00@x.test", "expected": "ana@x.test"}, "Null characters"),
        ({"email": "b" * 300, "expected": "ana@x.test"}, "at most 254 characters"),
    ]:
        page = manager_client.post(replace, fields, follow=True).content.decode()
        assert says in page
    done = manager_client.post(
        replace, {"email": "ben@x.test", "expected": "ana@x.test"}, follow=True
    ).content.decode()
    assert "ana@x.test&#x27;s invitation is now ben@x.test&#x27;s" in done
    # Given again just now: off the two-week list.
    again = manager_client.get(url, {"stale": "1"}).content.decode()
    assert 'data-testid="invitation"' not in again and "has joined" in again


def test_a_learner_replaced_while_clicking_start_does_not_start_the_new_learners_seat(
    organization, admin
):
    from accounts.models import Membership
    from tests.accounts.factories import member
    from training.learner.services import enrollment_start

    organization.redemption_point = "start"
    organization.save()
    ana = member(organization, Membership.Role.LEARNER, email="ana@acme.test")
    plan = confirmed_plan(organization, admin, emails=(ana.email,))
    stale = Enrollment.objects.get(participant__email=ana.email)  # read before the replace
    turnover.participant_replace(
        participant=plan.participants.get(email=ana.email), email="ben@acme.test", user=admin
    )
    with pytest.raises(PlanRefused, match="no longer yours"):
        enrollment_start(enrollment=stale, user=ana)
    seat = Enrollment.objects.get()
    assert seat.status == "assigned" and seat.participant.email == "ben@acme.test"
    assert Hold.objects.get().status == "active"


def test_a_seat_given_back_and_forth_is_emailed_and_reminded_each_time(
    organization, admin, mailoutbox, django_capture_on_commit_callbacks
):
    organization.redemption_point = "start"
    organization.save()
    plan = confirmed_plan(organization, admin)
    with django_capture_on_commit_callbacks(execute=True):
        for email in ("ben@acme.test", "ana@acme.test", "ben@acme.test"):
            holder = plan.participants.get(removed_at__isnull=True)
            turnover.participant_replace(participant=holder, email=email, user=admin)
    assert [m.to[0] for m in mailoutbox] == ["ben@acme.test", "ana@acme.test", "ben@acme.test"]
    seat = Enrollment.objects.get()
    turnover.start_reminders_send(now=seat.created_at + dt.timedelta(days=3, hours=1))
    assert OutboxMessage.objects.filter(kind=turnover.REMINDER, recipient="ben@acme.test").exists()


def test_an_invitation_is_not_given_to_someone_done_with_the_course(
    organization, admin, manager, manager_client
):
    from training.invitations import services as invitations
    from training.models import Assignment

    managed, sent = _invitation(organization, admin, manager)
    Assignment.objects.create(
        organization=organization, level=sent.level, course=sent.course, email="ben@x.test",
        manager=manager, status=Assignment.Status.COMPLETED,
    )  # fmt: skip
    with pytest.raises(invitations.InvitationRefused, match="done with"):
        invitations.invitation_replace(
            assignment=sent, email="ben@x.test", expected_email="ana@x.test"
        )
    # From the two-week list, the manager lands back on it.
    response = manager_client.post(
        reverse("training:invitation_replace", args=[sent.pk]),
        {"email": "cy@x.test", "expected": "ana@x.test", "stale": "1"},
    )
    url = reverse("training:managed_course", args=[managed.pk])
    assert response["Location"] == f"{url}?stale=1"
