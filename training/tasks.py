"""Training's periodic tasks (Celery beat): thin, ids in, a service call. Training's emails
go through the outbox (outbox/tasks.py sends them); the three email task names imported
below are kept only for tasks queued before the outbox, and importing them here registers
them with the worker."""

from celery import shared_task

from .emails import (  # noqa: F401 - registered with the worker through this module
    send_assignment_emails,
    send_invitation_emails,
    send_invitation_short_email,
)
from .invitations import services as invitations
from .plans import turnover


@shared_task
def expire_invitations() -> int:
    return invitations.invitations_expire()


@shared_task
def start_reminders() -> int:
    return turnover.start_reminders_send()
