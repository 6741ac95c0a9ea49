"""Training's emails go through the outbox: written with the change that causes them, one
per person, sent once, kept while the mail server or the broker is down."""

import datetime as dt
import uuid
from collections import Counter

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from outbox import services as outbox
from outbox import tasks as outbox_tasks
from outbox.models import OutboxMessage
from tests.credits.factories import grant
from tests.training.factories import plan_with
from tests.training.test_invitations import _course, invite
from training import emails
from training.invitations import services as invitations
from training.models import Assignment
from training.plans import services as plans

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_down(monkeypatch):
    """Every request to the broker fails, as it does while Redis is stopped."""

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(outbox_tasks.send_message, "delay", refuse)
    monkeypatch.setattr(outbox_tasks.send_messages, "delay", refuse)
    monkeypatch.setattr(outbox, "_broker_paused_until", 0.0)


def to_each() -> Counter:
    return Counter(address for message in mail.outbox for address in message.to)


def test_confirm_writes_one_message_per_person_and_a_retry_writes_none(
    organization, admin, learner, django_capture_on_commit_callbacks
):
    grant(organization, 20)
    plan = plan_with(organization, admin, emails=["a@acme.test", learner.email], costs=(1, 2))
    token = str(uuid.uuid4())
    with django_capture_on_commit_callbacks(execute=True):
        plans.plan_confirm(plan=plan, user=admin, token=token)
        plans.plan_confirm(plan=plan, user=admin, token=token)  # the same click again
    assert to_each() == Counter({"a@acme.test": 1, learner.email: 1})
    assert OutboxMessage.objects.filter(kind=emails.PLAN_CONFIRMED).count() == 2
    by_address = {m.to[0]: m for m in mail.outbox}
    assert "Accept and set your password" in by_address["a@acme.test"].body
    assert "Start here" in by_address[learner.email].body

    plans.participants_add(plan=plan, rows=["late@acme.test"])
    with django_capture_on_commit_callbacks(execute=True):
        plans.plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()))
    assert to_each() == Counter({"a@acme.test": 1, learner.email: 1, "late@acme.test": 1})


def test_a_confirm_the_ledger_refuses_writes_no_email(organization, admin):
    grant(organization, 1)
    plan = plan_with(organization, admin, emails=["a@acme.test", "b@acme.test"])
    with pytest.raises(plans.ledger.InsufficientCredits):
        plans.plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()))
    assert not OutboxMessage.objects.exists()


def test_a_plan_named_with_cr_lf_sends_a_valid_email(
    organization, admin, django_capture_on_commit_callbacks
):
    grant(organization, 5)
    plan = plan_with(organization, admin, emails=["a@acme.test"])
    plan.name = "A\r\nBcc: spy@evil.test"
    plan.save()
    with django_capture_on_commit_callbacks(execute=True):
        plans.plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()))
    (message,) = mail.outbox
    assert message.subject == "Training: A Bcc: spy@evil.test"
    assert message.message()["Bcc"] is None and message.to == ["a@acme.test"]


def test_confirm_emails_written_while_smtp_is_down_are_all_sent_after_it_recovers(
    organization, admin, settings, django_capture_on_commit_callbacks
):
    from tests.outbox.backends import FlakyBackend

    settings.EMAIL_BACKEND = "tests.outbox.backends.FlakyBackend"
    FlakyBackend.reset()
    FlakyBackend.down = True
    grant(organization, 5)
    people = ["a@acme.test", "b@acme.test", "c@acme.test"]
    plan = plan_with(organization, admin, emails=people)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert plans.plan_confirm(plan=plan, user=admin, token="t").people == 3
        assert mail.outbox == []
        FlakyBackend.down = False
        with time_machine.travel(timezone.now() + dt.timedelta(minutes=5)):
            outbox_tasks.sweep()
    finally:
        FlakyBackend.reset()
    assert to_each() == Counter(dict.fromkeys(people, 1))


def test_reinvite_with_the_broker_down_succeeds_and_the_new_link_goes_out_later(
    manager_client, organization, admin, manager, broker_down, django_capture_on_commit_callbacks
):
    managed, level = _course(organization, admin, manager)
    (sent,), _ = invite(managed, level, "ana@x.test")
    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post(reverse("training:invitation_reinvite", args=[sent.pk]))
    assert response.status_code == 302
    fresh = Assignment.objects.get(pk=sent.pk)
    assert fresh.token != sent.token
    assert mail.outbox == []
    outbox_tasks.sweep()  # the broker is back: beat's sweep
    # The first invitation and the re-send, each once; the latest carries the live link.
    assert [m.to for m in mail.outbox] == [["ana@x.test"], ["ana@x.test"]]
    assert reverse("training:accept", args=[fresh.token]) in mail.outbox[-1].body


def test_an_invite_replayed_writes_no_second_email(course_setup_outbox):
    managed, level = course_setup_outbox
    token = str(uuid.uuid4())
    invitations.invite(manager=managed, level=level, text="ana@x.test", token=token)
    invitations.invite(manager=managed, level=level, text="ana@x.test", token=token)
    assert OutboxMessage.objects.filter(kind=emails.INVITATION).count() == 1


@pytest.fixture
def course_setup_outbox(organization, admin, manager):
    return _course(organization, admin, manager)


def test_tasks_queued_under_the_old_names_still_send_through_the_outbox(
    organization, admin, course_setup_outbox, django_capture_on_commit_callbacks
):
    plan = plan_with(organization, admin, emails=["a@acme.test"])
    managed, level = course_setup_outbox
    (invitation,), _ = invite(managed, level, "ana@x.test")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.send_assignment_emails([plan.participants.get().pk]) == 1
        assert emails.send_invitation_emails([invitation.pk]) == 0  # already in the outbox
    assert [m.to for m in mail.outbox] == [["a@acme.test"]]
