"""Training's emails, as outbox messages (outbox/services.py). The builders here render from
rows the services already hold (no query per person) and import no service; the services
write what they build in the transaction of the change that causes it, so a confirmation or
an invitation that commits has its emails, and one that rolls back has none."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from outbox.services import NewMessage, messages_enqueue, one_line

from .models import Assignment, Participant, TrainingPlan

PLAN_CONFIRMED = "training_plan_confirmed"
INVITATION = "training_invitation"
INVITATION_SHORT = "training_invitation_short"


def _render(name: str, context: dict) -> str:
    return get_template(f"emails/{name}.txt").render(context).strip() + "\n"


def plan_confirmation_messages(
    *,
    plan: TrainingPlan,
    organization: Organization,
    people: Iterable[Participant],
    cause: str,
) -> list[NewMessage]:
    """After Confirm users: members are told where to start, other addresses get their
    plan link. `cause` is the confirmation's ledger key, so a retried click writes nothing
    new and a later confirmation (people added since) writes its own."""
    plan_name = one_line(plan.name)
    names = {"plan_name": plan_name, "organization_name": one_line(organization.name)}
    start = settings.SITE_URL + reverse("training:my_training")
    messages = []
    for person in people:
        if person.user_id:
            text = _render("plan_enrolled", {**names, "link": start})
        else:
            join = settings.SITE_URL + reverse("training:join", args=[person.invite_token])
            text = _render("plan_invitation", {**names, "link": join})
        messages.append(
            NewMessage(
                key=f"{cause}:participant:{person.pk}",
                to=person.email,
                subject=f"Training: {plan_name}",
                text=text,
                kind=PLAN_CONFIRMED,
                organization=organization,
            )
        )
    return messages


def invitation_message(*, invitation: Assignment, organization: Organization) -> NewMessage:
    """A manager's invitation, or its re-send: keyed by the link it carries, so each link is
    sent once and a re-invite (a new link) sends again."""
    link = settings.SITE_URL + reverse("training:accept", args=[invitation.token])
    with timezone.override(zoneinfo.ZoneInfo(organization.time_zone)):
        text = _render(
            "invitation",
            {
                "organization_name": one_line(organization.name),
                "level": invitation.level,
                "link": link,
                "expires_at": invitation.expires_at,
            },
        )
    return NewMessage(
        key=f"training.invitation:{invitation.pk}:{invitation.token}",
        to=invitation.email,
        subject=f"Invitation: {invitation.level.course}",
        text=text,
        kind=INVITATION,
        organization=organization,
    )


def invitation_short_message(*, invitation: Assignment, now: dt.datetime) -> NewMessage:
    """A learner could not accept: the credits held for their invitation expired. Their
    manager is the one who can fix it (more credits, or cancel the invitation). Keyed by
    the organization's day: once a day at most, however often the learner retries."""
    organization = invitation.organization
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    course = invitation.level.course
    text = _render(
        "invitation_short",
        {
            "email": invitation.email,
            "level": invitation.level,
            "course": course,
            "link": settings.SITE_URL + reverse("training:my_courses"),
        },
    )
    return NewMessage(
        key=f"training.invitation-short:{invitation.pk}:{now.astimezone(zone).date()}",
        to=invitation.manager.email,
        subject=f"Invitation to {course}: credits needed",
        text=text,
        kind=INVITATION_SHORT,
        organization=organization,
    )


# The Celery tasks these emails used to be. Tasks queued under these names before a deploy
# still arrive after it: they now write the same emails to the outbox instead of being
# dropped as unregistered. Remove them one release after the outbox ships.


@shared_task
def send_assignment_emails(participant_ids: list[int]) -> int:
    people = list(
        Participant.objects.filter(pk__in=participant_ids).select_related("plan__organization")
    )
    messages = [
        message
        for person in people
        for message in plan_confirmation_messages(
            plan=person.plan,
            organization=person.plan.organization,
            people=[person],
            cause=f"plan:{person.plan_id}:queued",
        )
    ]
    with transaction.atomic():
        return len(messages_enqueue(messages=messages))


@shared_task
def send_invitation_emails(assignment_ids: list[int]) -> int:
    invitations = Assignment.objects.filter(pk__in=assignment_ids).select_related(
        "level__course", "organization"
    )
    messages = [
        invitation_message(invitation=invitation, organization=invitation.organization)
        for invitation in invitations
    ]
    with transaction.atomic():
        return len(messages_enqueue(messages=messages))


@shared_task
def send_invitation_short_email(assignment_id: int) -> int:
    invitation = (
        Assignment.objects.filter(pk=assignment_id, manager__isnull=False)
        .select_related("level__course", "manager", "organization")
        .first()
    )
    if invitation is None:
        return 0
    with transaction.atomic():
        message = invitation_short_message(invitation=invitation, now=timezone.now())
        return len(messages_enqueue(messages=[message]))
