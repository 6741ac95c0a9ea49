"""A manager's course invitations, from the invite form to the learner's link: one pending
invitation per address and course, dead links that say why and create nothing, accepting
that creates the account, the membership and the charge together or not at all."""

import datetime as dt
import uuid
from collections import Counter

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, User
from credits.audit import ledger_audit
from credits.models import Hold
from tests.accounts.factories import UserFactory
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.support.threads import run_threads
from training.allocations import services as allocations
from training.invitations import services as invitations
from training.models import Assignment

PASSWORD = "a-long-learner-passphrase"


@pytest.fixture(autouse=True)
def _audit(request):
    yield
    if "db" in request.fixturenames or "transactional_db" in request.fixturenames:
        report = ledger_audit()
        assert report.ok, report.violations


def _course(organization, admin, manager, *, credits=5, expires_at=None):
    """A course whose manager has `credits` credits to invite with."""
    grant(organization, 20, expires_at=expires_at)
    level = LevelFactory(credit_cost=1)
    allocations.course_allocate(
        organization=organization, course=level.course, quantity=10, actor=admin
    )
    managed = allocations.manager_register(
        organization=organization, course=level.course, user=manager
    )
    allocations.manager_assign(manager=managed, quantity=credits, actor=admin)
    return managed, level


@pytest.fixture
def course_setup(organization, admin, manager):
    return _course(organization, admin, manager)


def invite(managed, level, text):
    return invitations.invite(manager=managed, level=level, text=text, token=str(uuid.uuid4()))


def figures(managed):
    return allocations.figures(account=allocations.manager_account_of(managed))


def accept_url(invitation) -> str:
    return reverse("training:accept", args=[invitation.token])


def no_server_error(statuses) -> bool:
    return all(status < 500 for status in statuses)


pytestmark = pytest.mark.django_db


# --- One pending invitation per address and course -----------------------------------------


def test_inviting_a_pending_address_again_resends_it_and_holds_no_second_credit(
    course_setup, mailoutbox, django_capture_on_commit_callbacks
):
    managed, level = course_setup
    with django_capture_on_commit_callbacks(execute=True):
        (first,), _ = invite(managed, level, "ana@x.test")
        again = invite(managed, level, "ANA@x.test, ben@x.test")
    assert [a.email for a in again.sent] == ["ben@x.test"]
    assert [a.pk for a in again.resent] == [first.pk]
    assert figures(managed).held == 2
    ana = Assignment.objects.get(email="ana@x.test")
    assert ana.hold_id == first.hold_id and ana.token != first.token
    assert ana.replaced_tokens == [first.token]
    assert Counter(m.to[0] for m in mailoutbox) == Counter({"ana@x.test": 2, "ben@x.test": 1})
    (latest,) = [m for m in mailoutbox[1:] if m.to == ["ana@x.test"]]
    assert reverse("training:accept", args=[ana.token]) in latest.body


def test_the_manager_is_told_the_invitation_was_sent_again(manager_client, course_setup):
    managed, level = course_setup
    url = reverse("training:invite", args=[managed.pk])
    for _ in range(2):
        response = manager_client.post(
            url, {"level": level.pk, "emails": "ana@x.test", "token": uuid.uuid4()}, follow=True
        )
    page = response.content.decode()
    assert "ana@x.test already had a pending invitation" in page
    assert "no extra credit is held" in page
    assert page.count('data-testid="invitation"') == 1
    assert figures(managed).held == 1


def test_the_database_keeps_one_pending_invitation_per_address_and_course(
    organization, manager, course_setup
):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "ana@x.test")
    other_level = LevelFactory(course=level.course)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            organization=organization, level=other_level, email="ana@x.test", manager=manager
        )
    # Only pending ones count: once cancelled, the address can be invited anew.
    invitations.invite_cancel(assignment=sent, actor=manager)
    (fresh,), _ = invite(managed, level, "ana@x.test")
    assert fresh.course_id == level.course_id
    assert figures(managed).held == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["one manager in two tabs", "two managers of the course"])
def test_two_simultaneous_invites_of_one_address_hold_one_credit(organization, admin, manager, who):
    managed, level = _course(organization, admin, manager)
    managers = [managed, managed]
    if who == "two managers of the course":
        colleague = UserFactory(email="colleague@acme.test")
        Membership.objects.create(user=colleague, organization=organization, role="manager")
        second = allocations.manager_register(
            organization=organization, course=level.course, user=colleague
        )
        allocations.manager_assign(manager=second, quantity=2, actor=admin)
        managers[1] = second
    clients = []
    for each in managers:
        client = Client()
        client.force_login(each.user)
        clients.append(client)

    def post(n: int) -> int:
        return (
            clients[n]
            .post(
                reverse("training:invite", args=[managers[n].pk]),
                {"level": level.pk, "emails": "ana@x.test", "token": uuid.uuid4()},
            )
            .status_code
        )

    assert run_threads(2, post) == [302, 302]
    (pending,) = Assignment.objects.filter(email="ana@x.test")
    assert pending.status == "invited"
    assert Hold.objects.filter(status="active").count() == 1
    assert sum(figures(m).held for m in {m.pk: m for m in managers}.values()) == 1
    report = ledger_audit()
    assert report.ok, report.violations


# --- Dead links say why and create nothing --------------------------------------------------


def _kill(reason: str, managed, level, settings) -> tuple[str, str, int]:
    """An invitation link made unusable for `reason`: (url, what the page says, status)."""
    (sent,), _ = invite(managed, level, "ana@x.test")
    if reason == "cancelled":
        invitations.invite_cancel(assignment=sent, actor=managed.user)
        return accept_url(sent), "was cancelled by your manager", 410
    if reason == "expired":
        days = settings.INVITATION_VALID_DAYS + 1
        Assignment.objects.filter(pk=sent.pk).update(
            expires_at=timezone.now() - dt.timedelta(days=days)
        )
        return accept_url(sent), "has expired", 410
    if reason == "replaced":
        invitations.reinvite(assignment=sent)
        return accept_url(sent), "it was replaced by a newer one.", 410
    if reason == "unknown":
        return reverse("training:accept", args=[uuid.uuid4()]), "whole link", 410
    assert reason == "used"
    invitations.invite_accept(token=sent.token, user=UserFactory(email="ana@x.test"))
    return accept_url(sent), "already accepted", 409


@pytest.mark.parametrize("reason", ["cancelled", "expired", "replaced", "unknown", "used"])
def test_a_dead_link_says_why_and_creates_no_account(client, course_setup, settings, reason):
    managed, level = course_setup
    url, says, status = _kill(reason, managed, level, settings)
    users = User.objects.count()
    page = client.get(url)
    assert page.status_code == status
    text = page.content.decode()
    assert says in text
    assert 'name="password"' not in text
    if reason == "unknown":
        assert "replaced" not in text
    if reason == "used":
        assert "Sign in" in text
    posted = client.post(url, {"password": PASSWORD})
    assert posted.status_code == status
    assert says in posted.content.decode()
    assert User.objects.count() == users
    assert not User.objects.filter(memberships__isnull=True).exists()


def test_an_invitation_expired_by_the_nightly_task_says_expired(client, course_setup, settings):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "ana@x.test")
    later = timezone.now() + dt.timedelta(days=settings.INVITATION_VALID_DAYS, minutes=1)
    with time_machine.travel(later):
        invitations.invitations_expire()
        response = client.post(accept_url(sent), {"password": PASSWORD})
    assert response.status_code == 410
    assert "has expired" in response.content.decode()
    assert not User.objects.filter(email="ana@x.test").exists()


def test_someone_signed_in_with_another_address_is_told_before_posting(
    learner_client, course_setup
):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "ana@x.test")
    response = learner_client.get(accept_url(sent))
    assert response.status_code == 403
    assert "This invitation is for ana@x.test" in response.content.decode()
    assert learner_client.post(accept_url(sent)).status_code == 403
    assert figures(managed).held == 1


# --- Accepting creates everything or nothing ------------------------------------------------


def test_accepting_after_the_managers_lots_expired_creates_nothing_and_tells_the_manager(
    client, organization, admin, manager, mailoutbox, django_capture_on_commit_callbacks
):
    soon = timezone.now() + dt.timedelta(days=2)
    managed, level = _course(organization, admin, manager, credits=2, expires_at=soon)
    (sent,), _ = invite(managed, level, "ana@x.test")
    mailoutbox.clear()
    with time_machine.travel(soon + dt.timedelta(days=1)):
        for _ in range(2):  # a learner trying again does not flood the manager
            with django_capture_on_commit_callbacks(execute=True):
                response = client.post(accept_url(sent), {"password": PASSWORD})
            assert response.status_code == 409
            page = response.content.decode()
            assert "credits reserved for this invitation are no longer available" in page
            assert "Your manager has been told" in page
        assert not User.objects.filter(email="ana@x.test").exists()
        assert Assignment.objects.get(pk=sent.pk).status == "invited"
        assert Hold.objects.get(pk=sent.hold_id).status == "active"
        assert [m.to for m in mailoutbox] == [[manager.email]]
        assert "credits needed" in mailoutbox[0].subject

        # Once the manager has credits again, the same link works.
        grant(organization, 3)
        allocations.course_allocate(
            organization=organization, course=level.course, quantity=3, actor=admin
        )
        allocations.manager_assign(manager=managed, quantity=2, actor=admin)
        response = client.post(accept_url(sent), {"password": PASSWORD})
        assert response["Location"] == reverse("training:my_training")
        assert (figures(managed).held, figures(managed).used) == (0, 1)


def test_a_signed_in_learner_accepting_after_the_lots_expired_gets_the_same_page(
    organization, admin, manager
):
    soon = timezone.now() + dt.timedelta(days=2)
    managed, level = _course(organization, admin, manager, credits=2, expires_at=soon)
    ana = UserFactory(email="ana@x.test")
    (sent,), _ = invite(managed, level, ana.email)
    client = Client()
    client.force_login(ana)
    with time_machine.travel(soon + dt.timedelta(days=1)):
        response = client.post(accept_url(sent))
    assert response.status_code == 409
    assert "no longer available" in response.content.decode()
    assert not Membership.objects.filter(user=ana).exists()


@pytest.mark.django_db(transaction=True)
def test_two_tabs_accepting_with_a_password_at_once_make_one_account_and_one_capture(
    organization, admin, manager
):
    managed, level = _course(organization, admin, manager)
    rounds = 3  # a race is a matter of timing: several make a collision all but certain
    sent, _ = invite(managed, level, ", ".join(f"tab{n}@x.test" for n in range(rounds)))
    for invitation in sent:
        clients = [Client(), Client()]

        def post(n: int, invitation=invitation, clients=clients):
            response = clients[n].post(accept_url(invitation), {"password": PASSWORD})
            return response.status_code, response.get("Location", "")

        results = run_threads(2, post)
        assert no_server_error(status for status, _ in results)
        assert [where for _, where in results].count(reverse("training:my_training")) == 1
        (user,) = User.objects.filter(email=invitation.email)
        assert Membership.objects.get(user=user).role == "learner"
        assert Hold.objects.get(pk=invitation.hold_id).status == "captured"
    assert (figures(managed).held, figures(managed).used) == (0, rounds)
    report = ledger_audit()
    assert report.ok, report.violations


def test_the_second_tab_is_told_the_invitation_was_accepted(course_setup):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "ana@x.test")
    first, second = Client(), Client()
    assert second.get(accept_url(sent)).status_code == 200  # both tabs show the form
    assert first.post(accept_url(sent), {"password": PASSWORD}).status_code == 302
    response = second.post(accept_url(sent), {"password": PASSWORD})
    assert response.status_code == 409
    assert "already accepted" in response.content.decode()
    assert figures(managed).used == 1


# --- Odd input is a form error, never a 500 -------------------------------------------------


LONG_ADDRESS = "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com"  # valid, 260 characters


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"level": "1\x00"}, "Null characters are not allowed."),
        ({"emails": "ana@x.test\x00"}, "Null characters are not allowed."),
        ({"emails": "ana@x.test, " * 9000}, "longer than 100 kB"),
        ({"emails": ", ".join(f"p{n}@x.test" for n in range(1001))}, "at most 1,000"),
        ({"token": "not-a-uuid"}, "Enter a valid UUID."),
        ({"emails": LONG_ADDRESS}, "longer than 254 characters"),
    ],
)
def test_odd_invite_input_is_a_form_error(manager_client, course_setup, fields, says):
    managed, level = course_setup
    data = {"level": level.pk, "emails": "ana@x.test", "token": uuid.uuid4(), **fields}
    response = manager_client.post(reverse("training:invite", args=[managed.pk]), data, follow=True)
    assert response.status_code == 200
    assert says in response.content.decode()
    assert not Assignment.objects.exists()
    assert figures(managed).held == 0


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("x" * 129, "at most 128 characters"),
        (PASSWORD + "\x00", "Null characters are not allowed."),
        ("", "Choose a password."),
    ],
)
def test_odd_passwords_are_form_errors_and_create_nothing(client, course_setup, password, says):
    managed, level = course_setup
    (sent,), _ = invite(managed, level, "ana@x.test")
    response = client.post(accept_url(sent), {"password": password})
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not User.objects.filter(email="ana@x.test").exists()
    assert figures(managed).held == 1


def test_someone_who_already_accepted_is_not_invited_again_nor_held_twice(
    organization, admin, manager
):
    managed, level = _course(organization, admin, manager)
    result = invitations.invite(
        manager=managed, level=level, text="ana@x.test", token=str(uuid.uuid4())
    )
    (sent,) = result.sent
    invitations.invite_accept(token=sent.token, user=UserFactory(email="ana@x.test"))
    held_before = figures(managed).held
    again = invitations.invite(
        manager=managed, level=level, text="ana@x.test", token=str(uuid.uuid4())
    )
    assert (again.sent, again.resent) == ([], [])
    assert again.rejected == [("ana@x.test", "already enrolled in this course")]
    assert figures(managed).held == held_before


def test_a_double_submitted_resend_keeps_the_link_it_just_emailed(organization, admin, manager):
    managed, level = _course(organization, admin, manager)
    (sent,) = invitations.invite(
        manager=managed, level=level, text="ben@x.test", token=str(uuid.uuid4())
    ).sent
    form = str(uuid.uuid4())
    first = invitations.invite(manager=managed, level=level, text="ben@x.test", token=form)
    link = Assignment.objects.get(pk=sent.pk).token
    second = invitations.invite(manager=managed, level=level, text="ben@x.test", token=form)
    assert len(first.resent) == len(second.resent) == 1
    assert Assignment.objects.get(pk=sent.pk).token == link  # the emailed link still works


# --- The manager's course page --------------------------------------------------------------


def test_the_course_page_lists_invitations_a_page_at_a_time_and_acting_keeps_the_page(
    organization, admin, manager, manager_client
):
    grant(organization, 60)
    level = LevelFactory(credit_cost=1)
    allocations.course_allocate(
        organization=organization, course=level.course, quantity=60, actor=admin
    )
    managed = allocations.manager_register(
        organization=organization, course=level.course, user=manager
    )
    allocations.manager_assign(manager=managed, quantity=55, actor=admin)
    start = timezone.now() - dt.timedelta(days=60)
    for n in range(53):
        with time_machine.travel(start + dt.timedelta(hours=n), tick=False):
            invite(managed, level, f"learner{n:02}@x.test")
    url = reverse("training:managed_course", args=[managed.pk])
    first = manager_client.get(url).content.decode()
    second = manager_client.get(url, {"page": 2}).content.decode()
    assert first.count('data-testid="invitation"') == 50
    assert "learner52@x.test" in first and "learner03@x.test" in first
    assert "learner02@x.test" not in first
    assert second.count('data-testid="invitation"') == 3 and "learner00@x.test" in second
    assert "Learners 1\u201350 of 53" in first

    oldest = Assignment.objects.get(email="learner00@x.test")
    response = manager_client.post(
        reverse("training:invitation_cancel", args=[oldest.pk]), {"page": "2"}
    )
    assert response["Location"] == f"{url}?page=2"
    assert figures(managed).held == 52
    hostile = manager_client.post(
        reverse("training:invitation_cancel", args=[oldest.pk]), {"page": "\x00" + "9" * 99}
    )
    assert hostile.status_code == 302 and hostile["Location"] == url
