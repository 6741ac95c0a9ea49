"""Seat turnover (seed 002's "re-distribute that credit to another employee"): a confirmed
seat whose learner has not started goes to someone else in one step, reminders nudge the
learners who have not started, and admins see who has not started for two weeks.

Replace learner moves the seat's enrollments, with their holds (policy `start`) or their
redemption (policy `confirm`), from one person to another. No hold is released and none is
placed: at no moment is the credit free for another plan to take, and nothing is charged
twice. It runs under the plan's lock, like Confirm users and Remove, and refuses a person
who was removed or replaced meanwhile, so sixteen clicks on one row move the seat once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, User
from outbox.services import NewMessage, messages_enqueue, one_line
from training.emails import invitation_message, plan_confirmation_messages
from training.models import Assignment, Enrollment, ItemAssignment, Participant, TrainingPlan

from .services import EMAIL_LENGTH, PlanRefused, plan_lock

# Reminders to start, this many days after the seat was given; each sent once.
REMINDER_DAYS = (3, 7)
# A reminder whose day passed longer ago than this is not sent late (after an outage of the
# beat, or for seats given before reminders existed): it would arrive out of step.
REMINDER_WINDOW = dt.timedelta(days=2)
# "Not started for two weeks": what the admins' list shows.
NOT_STARTED_AFTER = dt.timedelta(days=14)
REMINDER = "training_start_reminder"


def participant_replace(*, participant: Participant, email: str, user: User) -> Participant:
    """Give `participant`'s confirmed seats, none started, to `email`: a member joins as
    themselves, another address is invited (their plan link is emailed). Returns the new
    participant."""
    email = email.strip().lower()
    try:
        if len(email) > EMAIL_LENGTH:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise PlanRefused("Enter the email address of the person to give the seat to.") from None
    with transaction.atomic():
        plan = plan_lock(participant.plan)
        if plan.status != TrainingPlan.Status.CONFIRMED:
            raise PlanRefused("Only the seats of a confirmed, open plan can be given to others.")
        old = Participant.objects.select_for_update(of=("self",)).get(pk=participant.pk)
        if old.removed_at is not None:
            raise PlanRefused(
                f"{old.email} is no longer in this plan (removed or replaced meanwhile): "
                "nothing was changed."
            )
        enrollments = list(
            Enrollment.objects.select_for_update(of=("self",))
            .filter(participant=old)
            .exclude(status=Enrollment.Status.REMOVED)
        )
        if not enrollments:
            raise PlanRefused(
                f"{old.email} is not confirmed yet: remove them and add the new person instead."
            )
        if any(e.status != Enrollment.Status.ASSIGNED for e in enrollments):
            raise PlanRefused(f"{old.email} has started: their seat can no longer be given away.")
        if email == old.email:
            raise PlanRefused(f"{email} already has this seat.")
        if plan.participants.filter(email=email, removed_at__isnull=True).exists():
            raise PlanRefused(f"{email} is already in this plan.")
        now = timezone.now()
        member = (
            Membership.objects.filter(organization=plan.organization, user__email=email)
            .values_list("user_id", flat=True)
            .first()
        )
        new, created = Participant.objects.get_or_create(
            plan=plan, email=email, defaults={"user_id": member, "confirmed_at": now}
        )
        if not created:  # someone removed from this plan earlier comes back, with a new link
            new.removed_at, new.confirmed_at, new.user_id = None, now, member or new.user_id
            new.invite_token = uuid.uuid4()
            new.save(update_fields=["removed_at", "confirmed_at", "user", "invite_token"])
        # The seats themselves move: enrollments (with their hold or redemption) and the
        # seat assignments. Enrollments created_at restarts the reminders for the new person.
        Enrollment.objects.filter(pk__in=[e.pk for e in enrollments]).update(
            participant=new, created_at=now
        )
        ItemAssignment.objects.filter(participant=old).update(participant=new)
        old.removed_at = now
        old.save(update_fields=["removed_at"])
        messages_enqueue(
            messages=plan_confirmation_messages(
                plan=plan,
                organization=plan.organization,
                people=[new],
                # Each move its own email: a seat that comes back to someone is sent again.
                cause=f"plan:{plan.pk}:replace:{old.pk}:{uuid.uuid4().hex}",
            )
        )
    return new


def not_started(*, organization, now: dt.datetime | None = None) -> QuerySet[Enrollment]:
    """Confirmed seats of open plans not started two weeks after they were given, oldest
    first: the admins' list (callers page it)."""
    now = now or timezone.now()
    return (
        Enrollment.objects.filter(
            participant__plan__organization=organization,
            participant__plan__status=TrainingPlan.Status.CONFIRMED,
            participant__removed_at__isnull=True,
            status=Enrollment.Status.ASSIGNED,
            created_at__lte=now - NOT_STARTED_AFTER,
        )
        .select_related("participant__plan", "level__course")
        .order_by("created_at", "id")
    )


def start_reminders_send(*, now: dt.datetime | None = None) -> int:
    """Writes the reminders due: to each learner whose seat was given 3 (then 7) days ago
    and who has not started, and to each address whose invitation from a manager waits as
    long. Keyed by enrollment and day, so a task delivered twice, or an
    hourly run over the same day, writes each reminder once. Reads the seats given in the
    reminder windows only (index enrollment_not_started), not every enrollment."""
    now = now or timezone.now()
    written = 0
    for days in REMINDER_DAYS:
        due = now - dt.timedelta(days=days)
        seats = (
            Enrollment.objects.filter(
                status=Enrollment.Status.ASSIGNED,
                created_at__lte=due,
                created_at__gt=due - REMINDER_WINDOW,
                participant__removed_at__isnull=True,
                participant__plan__status=TrainingPlan.Status.CONFIRMED,
            )
            .select_related("participant__plan__organization", "level__course")
            .order_by("id")
        )
        batch = [_reminder(seat, days) for seat in seats.iterator(chunk_size=500)]
        # And the managers' invitations not accepted yet: the invitation again, its link.
        pending = (
            Assignment.objects.filter(
                status=Assignment.Status.INVITED,
                created_at__lte=due,
                created_at__gt=due - REMINDER_WINDOW,
            )
            .select_related("organization", "level__course")
            .order_by("id")
        )
        for invitation in pending.iterator(chunk_size=500):
            message = invitation_message(
                invitation=invitation, organization=invitation.organization
            )
            batch.append(
                dataclasses.replace(
                    message,
                    key=f"training.invitation-reminder:{invitation.pk}:{invitation.token}:{days}",
                    subject=f"Reminder: {message.subject}",
                    kind=REMINDER,
                )
            )
        if batch:
            with transaction.atomic():
                written += len(messages_enqueue(messages=batch))
    return written


def _reminder(enrollment: Enrollment, days: int) -> NewMessage:
    person = enrollment.participant
    plan = person.plan
    if person.user_id:
        link = settings.SITE_URL + reverse("training:my_training")
    else:
        link = settings.SITE_URL + reverse("training:join", args=[person.invite_token])
    text = get_template("emails/start_reminder.txt").render(
        {
            "level": enrollment.level,
            "plan_name": one_line(plan.name),
            "organization_name": one_line(plan.organization.name),
            "days": days,
            "link": link,
        }
    )
    return NewMessage(
        # The seat's own moment: a seat given again (Replace) is reminded again.
        key=(
            f"training.start-reminder:{enrollment.pk}:{person.pk}:"
            f"{int(enrollment.created_at.timestamp())}:{days}"
        ),
        to=person.email,
        subject=f"Reminder: start {one_line(str(enrollment.level))}",
        text=text.strip() + "\n",
        kind=REMINDER,
        organization=plan.organization,
    )
