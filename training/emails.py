"""Training's emails, as Celery tasks that take ids: they read rows and send, and import
no service, so services can enqueue them without an import circle."""

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from .models import Assignment, Participant


@shared_task
def send_assignment_emails(participant_ids: list[int]) -> int:
    """After a confirmation commits: members are told where to start; other addresses get
    their invitation link. Safe to run twice (an extra email, never an extra charge)."""
    sent = 0
    people = Participant.objects.filter(pk__in=participant_ids).select_related("plan")
    for person in people:
        if person.user_id:
            link = settings.SITE_URL + reverse("training:my_training")
            body = f"You are enrolled in the training plan {person.plan.name}.\nStart here: {link}"
        else:
            link = settings.SITE_URL + reverse("training:join", args=[person.invite_token])
            body = (
                f"You are invited to the training plan {person.plan.name} of "
                f"{person.plan.organization.name}.\nAccept and set your password: {link}"
            )
        send_mail(f"Training: {person.plan.name}", body, None, [person.email])
        sent += 1
    return sent


@shared_task
def send_invitation_emails(assignment_ids: list[int]) -> int:
    sent = 0
    for invitation in Assignment.objects.filter(pk__in=assignment_ids).select_related(
        "level__course", "organization"
    ):
        link = settings.SITE_URL + reverse("training:accept", args=[invitation.token])
        send_mail(
            f"Invitation: {invitation.level.course}",
            f"{invitation.organization.name} invites you to {invitation.level}.\n"
            f"Accept here: {link}\nThe link works until {invitation.expires_at:%b %-d, %Y}.",
            None,
            [invitation.email],
        )
        sent += 1
    return sent


@shared_task
def send_invitation_short_email(assignment_id: int) -> int:
    """A learner could not accept: the credits held for their invitation expired. Their
    manager is the one who can fix it (more credits, or cancel the invitation)."""
    invitation = (
        Assignment.objects.filter(pk=assignment_id, manager__isnull=False)
        .select_related("level__course", "manager")
        .first()
    )
    if invitation is None:
        return 0
    course = invitation.level.course
    send_mail(
        f"Invitation to {course}: credits needed",
        f"{invitation.email} tried to accept your invitation to {invitation.level}, but the "
        "credits held for it have expired, so nothing was enrolled.\n"
        f"Ask your admin to assign you credits for {course}: the learner's link then works "
        "again. Or cancel the invitation from My courses: "
        f"{settings.SITE_URL}{reverse('training:my_courses')}",
        None,
        [invitation.manager.email],
    )
    return 1
