"""Course allocations and course managers (seed 001): allocations are ledger transfers
(pool → course → manager, each lot keeping its expiry); an admin's direct enrollment is a
redemption from the course's credits or the pool."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from accounts.models import Membership, Organization, User
from catalog.models import Course, Level
from credits import selectors as ledger_reads
from credits import services as ledger
from credits.models import Account
from training.common import TrainingRefused
from training.models import Assignment, CourseManager


class AllocationRefused(TrainingRefused):
    """A refusal of Assign credits, fit to show."""


def figures(*, account: Account) -> ledger_reads.AccountFigures:
    """What an account can still give, has reserved for pending invites, and has spent."""
    return ledger_reads.account_figures(accounts=[account])[account.pk]


def _key() -> str:
    return f"ui:{uuid.uuid4()}"


def course_allocate(
    *, organization: Organization, course: Course, quantity: int, actor: User, key: str = ""
):
    """Earmark pool credits for a course."""
    return ledger.credits_transfer(
        source=ledger.pool_account(organization=organization),
        destination=ledger.course_account(organization=organization, course=course),
        quantity=quantity,
        idempotency_key=key or _key(),
        actor=actor,
    )


def course_release(
    *, organization: Organization, course: Course, quantity: int, actor: User, key: str = ""
):
    """Give unallocated course credits back to the pool."""
    return ledger.credits_transfer(
        source=ledger.course_account(organization=organization, course=course),
        destination=ledger.pool_account(organization=organization),
        quantity=quantity,
        idempotency_key=key or _key(),
        actor=actor,
    )


def manager_register(*, organization: Organization, course: Course, user: User) -> CourseManager:
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None:
        raise AllocationRefused("Only members of the organization can manage a course.")
    if membership.role == Membership.Role.LEARNER:
        membership.role = Membership.Role.MANAGER
        membership.save(update_fields=["role"])
    manager, _ = CourseManager.objects.get_or_create(
        organization=organization, course=course, user=user
    )
    return manager


def manager_assign(*, manager: CourseManager, quantity: int, actor: User, key: str = ""):
    """Give course credits to a manager; refused while the course has none (seed 001)."""
    course_account = ledger.course_account(organization=manager.organization, course=manager.course)
    if figures(account=course_account).available <= 0:
        raise AllocationRefused(
            f"{manager.course} has no credits to assign: allocate credits from your pool to "
            "the course first."
        )
    return ledger.credits_transfer(
        source=course_account,
        destination=manager_account_of(manager),
        quantity=quantity,
        idempotency_key=key or _key(),
        actor=actor,
    )


def manager_take_back(*, manager: CourseManager, quantity: int, actor: User, key: str = ""):
    """Take back what a manager has not used or reserved."""
    return ledger.credits_transfer(
        source=manager_account_of(manager),
        destination=ledger.course_account(organization=manager.organization, course=manager.course),
        quantity=quantity,
        idempotency_key=key or _key(),
        actor=actor,
    )


def manager_account_of(manager: CourseManager) -> Account:
    return ledger.manager_account(
        organization=manager.organization, course=manager.course, manager=manager.user
    )


def manual_enroll(
    *, organization: Organization, user: User, level: Level, actor: User, token: str
) -> Assignment:
    """Seed 001's "Enroll user": the credit comes from the course's allocation when it has
    any, else from the pool. Short: InsufficientCredits, nothing enrolled."""
    if not Membership.objects.filter(organization=organization, user=user).exists():
        raise AllocationRefused("Only members can be enrolled; invite others by email.")
    course_account = ledger.course_account(organization=organization, course=level.course)
    source = (
        course_account
        if figures(account=course_account).available >= level.credit_cost
        else ledger.pool_account(organization=organization)
    )
    with transaction.atomic():
        redemption = ledger.credits_redeem(
            account=source,
            quantity=level.credit_cost,
            reference=f"Enrollment: {user.email} in {level}",
            idempotency_key=f"enroll:{token}",
            actor=actor,
        )
        assignment, _ = Assignment.objects.get_or_create(
            redemption=redemption,
            defaults={
                "organization": organization,
                "level": level,
                "course_id": level.course_id,
                "email": user.email,
                "user": user,
                "status": Assignment.Status.ACCEPTED,
                "accepted_at": timezone.now(),
            },
        )
    return assignment
