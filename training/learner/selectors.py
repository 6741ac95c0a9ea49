"""Reads of a learner's own training: what the My training page and their dashboard show."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Organization, User
from training.models import Assignment, Enrollment


def my_enrollments(*, organization: Organization, user: User) -> QuerySet[Enrollment]:
    """The learner's enrollments through training plans, removed ones left out."""
    return (
        Enrollment.objects.filter(
            participant__user=user,
            participant__plan__organization=organization,
            participant__removed_at__isnull=True,
        )
        .exclude(status=Enrollment.Status.REMOVED)
        .select_related("level__course", "participant__plan")
    )


def my_courses(*, organization: Organization, user: User) -> QuerySet[Assignment]:
    """The courses a manager invited the learner to, once accepted."""
    return Assignment.objects.filter(
        organization=organization,
        user=user,
        status__in=[
            Assignment.Status.ACCEPTED,
            Assignment.Status.STARTED,
            Assignment.Status.COMPLETED,
        ],
    ).select_related("level__course")
