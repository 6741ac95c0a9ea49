"""A learner's own steps: starting (which captures a held credit, once) and progress."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from credits import services as ledger
from training.models import Assignment, Enrollment
from training.plans.services import PlanRefused, plan_complete_if_done, plan_lock


def enrollment_start(*, enrollment: Enrollment, user: User) -> Enrollment:
    """The learner starts: under policy `start` the hold is captured now (exactly once)."""
    plan = enrollment.participant.plan
    organization = plan.organization
    with transaction.atomic():
        # The plan row first, like Remove and Confirm users: a removal and a start of the
        # same person take turns, so nobody who started is marked removed.
        plan_lock(plan)
        # Read again under the lock, still this participant's: the seat may have been given
        # to someone else (Replace learner) while this request waited for the plan.
        enrollment = (
            Enrollment.objects.select_for_update(of=("self",))
            .filter(
                pk=enrollment.pk,
                participant_id=enrollment.participant_id,
                participant__removed_at__isnull=True,
            )
            .first()
        )
        if enrollment is None:
            raise PlanRefused("This seat is no longer yours: your admin gave it to someone else.")
        if enrollment.status != Enrollment.Status.ASSIGNED:
            return enrollment
        if enrollment.hold_id:
            ledger.hold_capture(
                hold=enrollment.hold,
                actor=user,
                allow_overage=organization.when_short == Organization.WhenShort.BILL_OVERAGE,
            )
        enrollment.start()
        enrollment.started_at = timezone.now()
        enrollment.save(update_fields=["status", "started_at"])
    return enrollment


def enrollment_progress(*, enrollment: Enrollment, progress: int) -> Enrollment:
    if enrollment.status != Enrollment.Status.STARTED:
        raise PlanRefused("Start the course first.")
    enrollment.progress = max(enrollment.progress, min(max(progress, 0), 100))
    fields = ["progress"]
    if enrollment.progress == 100:
        enrollment.finish()
        enrollment.completed_at = timezone.now()
        fields += ["status", "completed_at"]
    enrollment.save(update_fields=fields)
    if enrollment.status == Enrollment.Status.COMPLETED:
        plan_complete_if_done(enrollment.participant.plan)
    return enrollment


def assignment_progress(*, assignment: Assignment, progress: int) -> Assignment:
    """A course outside any plan: Start (progress 0) moves an accepted seat to started; later
    progress only ever goes up, and 100 completes it."""
    if assignment.status == Assignment.Status.ACCEPTED:
        assignment.start()
    if assignment.status == Assignment.Status.STARTED and progress:
        assignment.progress = max(assignment.progress, min(progress, 100))
        if assignment.progress == 100:
            assignment.finish()
    assignment.save(update_fields=["status", "progress"])
    return assignment
