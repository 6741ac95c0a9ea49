"""Course allocations, managers and their invitations (seed 001). Allocations are ledger
transfers; invitations are holds on the manager's account, captured when accepted."""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Membership, Organization, User
from catalog.models import Course, Level
from credits import selectors as ledger_reads
from credits import services as ledger
from credits.models import Account

from .models import Assignment, CourseManager
from .services import PlanRefused, split_emails
from .tasks import send_invitation_emails


class AllocationRefused(PlanRefused):
    pass


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
        destination=_manager_account(manager),
        quantity=quantity,
        idempotency_key=key or _key(),
        actor=actor,
    )


def manager_take_back(*, manager: CourseManager, quantity: int, actor: User, key: str = ""):
    """Take back what a manager has not used or reserved."""
    return ledger.credits_transfer(
        source=_manager_account(manager),
        destination=ledger.course_account(organization=manager.organization, course=manager.course),
        quantity=quantity,
        idempotency_key=key or _key(),
        actor=actor,
    )


def _manager_account(manager: CourseManager) -> Account:
    return ledger.manager_account(
        organization=manager.organization, course=manager.course, manager=manager.user
    )


def invite(
    *, manager: CourseManager, level: Level, text: str, token: str
) -> tuple[list[Assignment], list[tuple[str, str]]]:
    """Invite learners by email: one hold of the level's cost each on the manager's account,
    all or none (short: InsufficientCredits). `token` (one per rendered form) makes a double
    submission return the same invitations. Returns (invitations, rejected rows)."""
    if level.course_id != manager.course_id:
        raise AllocationRefused("That level is not part of this course.")
    emails, rejected = [], []
    for row in split_emails(text):
        email = row.lower()
        try:
            validate_email(email)
        except ValidationError:
            rejected.append((row, "not an email address"))
            continue
        if email in emails:
            rejected.append((row, "listed twice"))
            continue
        emails.append(email)
    if not emails:
        return [], rejected
    expires = timezone.now() + dt.timedelta(days=settings.INVITATION_VALID_DAYS)
    with transaction.atomic():
        holds = ledger.holds_place_batch(
            account=_manager_account(manager),
            quantities=[level.credit_cost] * len(emails),
            references=[f"Invitation: {email}, {level}" for email in emails],
            idempotency_key=f"invite:{manager.pk}:{token}",
            actor=manager.user,
        )
        existing = {a.hold_id: a for a in Assignment.objects.filter(hold__in=holds)}
        if existing:  # a replay of the same form
            return list(existing.values()), rejected
        invitations = Assignment.objects.bulk_create(
            Assignment(
                organization=manager.organization,
                level=level,
                email=email,
                manager=manager.user,
                hold=hold,
                expires_at=expires,
            )
            for email, hold in zip(emails, holds, strict=True)
        )
        ids = [a.pk for a in invitations]
        transaction.on_commit(lambda: send_invitation_emails.delay(ids))
    return invitations, rejected


def _locked(assignment: Assignment) -> Assignment:
    return (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("hold", "level__course")
        .get(pk=assignment.pk)
    )


def invite_cancel(*, assignment: Assignment, actor: User) -> Assignment:
    """The link dies and the held credit goes back to the manager."""
    with transaction.atomic():
        assignment = _locked(assignment)
        if not can_proceed(assignment.cancel):
            raise AllocationRefused(
                f"This invitation is {assignment.get_status_display().lower()}."
            )
        ledger.hold_release(hold=assignment.hold, actor=actor)
        assignment.cancel()
        assignment.save(update_fields=["status"])
    return assignment


def reinvite(*, assignment: Assignment) -> Assignment:
    """A new link (the old one dies), the same hold, a new validity, the email again."""
    with transaction.atomic():
        assignment = _locked(assignment)
        if assignment.status != Assignment.Status.INVITED:
            raise AllocationRefused(
                f"This invitation is {assignment.get_status_display().lower()}: invite again."
            )
        assignment.token = uuid.uuid4()
        assignment.expires_at = timezone.now() + dt.timedelta(days=settings.INVITATION_VALID_DAYS)
        assignment.save(update_fields=["token", "expires_at"])
        transaction.on_commit(lambda: send_invitation_emails.delay([assignment.pk]))
    return assignment


def invite_accept(*, token: uuid.UUID, user: User) -> Assignment:
    """The learner accepts: they become a learner member, are enrolled, and the hold is
    captured, exactly once (the row is locked; a second tab finds it accepted)."""
    with transaction.atomic():
        found = Assignment.objects.filter(token=token).first()
        if found is None:
            raise AllocationRefused(
                "This invitation link is no longer valid: it was replaced by a newer one or "
                "never existed. Use the latest email you received."
            )
        assignment = _locked(found)
        if assignment.status == Assignment.Status.ACCEPTED and assignment.user_id == user.pk:
            return assignment  # the same person again: already enrolled, nothing to charge
        if assignment.status != Assignment.Status.INVITED:
            raise AllocationRefused(
                f"This invitation was {assignment.get_status_display().lower()}; ask your "
                "manager for a new one."
            )
        if assignment.expires_at and assignment.expires_at <= timezone.now():
            raise AllocationRefused(
                "This invitation has expired; ask your manager to re-invite you."
            )
        if user.email.lower() != assignment.email:
            raise AllocationRefused(
                f"This invitation is for {assignment.email}; you are signed in as {user.email}."
            )
        ledger.hold_capture(hold=assignment.hold, actor=user)
        Membership.objects.get_or_create(
            user=user, organization=assignment.organization, defaults={"role": "learner"}
        )
        assignment.user = user
        assignment.accepted_at = timezone.now()
        assignment.accept()
        assignment.save(update_fields=["user", "accepted_at", "status"])
    return assignment


def invitations_expire(*, now: dt.datetime | None = None) -> int:
    """Expire pending invitations past their date and release their holds. Idempotent."""
    now = now or timezone.now()
    count = 0
    due = Assignment.objects.filter(status=Assignment.Status.INVITED, expires_at__lte=now)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            assignment = _locked(Assignment(pk=pk))
            if assignment.status != Assignment.Status.INVITED:
                continue
            ledger.hold_release(hold=assignment.hold)
            assignment.expire()
            assignment.save(update_fields=["status"])
            count += 1
    return count


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
                "email": user.email,
                "user": user,
                "status": Assignment.Status.ACCEPTED,
                "accepted_at": timezone.now(),
            },
        )
    return assignment
