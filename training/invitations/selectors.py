"""Reads of a manager's side: their courses with their credits and their learners."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import Organization, User
from credits import selectors as credit_selectors
from credits.models import Account
from training.models import Assignment, CourseManager


def manager_figures(managers: list[CourseManager]) -> dict[int, credit_selectors.AccountFigures]:
    """Each manager's figures, without creating accounts on a read (none yet: all zero)."""
    if not managers:
        return {}
    accounts = list(
        Account.objects.filter(
            organization_id=managers[0].organization_id,
            kind=Account.Kind.MANAGER,
            manager_id__in={m.user_id for m in managers},
        )
    )
    figures = credit_selectors.account_figures(accounts=accounts)
    by_scope = {(a.course_id, a.manager_id): figures[a.pk] for a in accounts}
    return {
        m.pk: by_scope.get((m.course_id, m.user_id), credit_selectors.NO_FIGURES) for m in managers
    }


@dataclass
class ManagedCourse:
    manager: CourseManager
    figures: credit_selectors.AccountFigures
    # Invitations by status ("invited", "accepted", "started", ...): the manager's learners.
    learners: dict[str, int] = field(default_factory=dict)
    # Joined BEHIND_AFTER ago or more and not yet half way: the ones to nudge.
    behind: int = 0

    @property
    def waiting(self) -> int:
        """Invited, not yet accepted: the ones to chase."""
        return self.learners.get(Assignment.Status.INVITED, 0)

    @property
    def learning(self) -> int:
        return sum(
            self.learners.get(status, 0)
            for status in (Assignment.Status.ACCEPTED, Assignment.Status.STARTED)
        )

    @property
    def completed(self) -> int:
        return self.learners.get(Assignment.Status.COMPLETED, 0)


# A learner who joined this long ago and is not half way through counts as behind.
BEHIND_AFTER = dt.timedelta(days=14)
BEHIND_BELOW_PROGRESS = 50


def managed_courses(*, organization: Organization, user: User) -> list[ManagedCourse]:
    """The courses `user` manages in `organization`, with their credits and their learners
    counted by status and how many are behind: three queries, whatever the number of
    courses or learners."""
    managers = list(
        CourseManager.objects.filter(organization=organization, user=user)
        .select_related("course")
        .order_by("course__title")
    )
    figures = manager_figures(managers)
    counts: dict[int, dict[str, int]] = {}
    behind: dict[int, int] = {}
    lagging = Q(
        status__in=[Assignment.Status.ACCEPTED, Assignment.Status.STARTED],
        progress__lt=BEHIND_BELOW_PROGRESS,
        accepted_at__lte=timezone.now() - BEHIND_AFTER,
    )
    for row in (
        Assignment.objects.filter(organization=organization, manager=user)
        .values("course_id", "status")
        .annotate(n=Count("id"), behind=Count("id", filter=lagging))
    ):
        counts.setdefault(row["course_id"], {})[row["status"]] = row["n"]
        behind[row["course_id"]] = behind.get(row["course_id"], 0) + row["behind"]
    return [
        ManagedCourse(
            manager=m,
            figures=figures[m.pk],
            learners=counts.get(m.course_id, {}),
            behind=behind.get(m.course_id, 0),
        )
        for m in managers
    ]
