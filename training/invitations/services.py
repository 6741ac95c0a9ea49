"""A manager's invitations (seed 001): each holds the level's cost on the manager's account
until the learner accepts (captured, once), the invitation is cancelled or it expires
(released)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Membership, User
from catalog.models import Level
from credits import services as ledger
from outbox.services import messages_enqueue
from training.allocations.services import manager_account_of
from training.common import TrainingRefused, split_emails
from training.emails import invitation_message, invitation_short_message
from training.models import Assignment, CourseManager

from .joining import learner_account_create


class InvitationRefused(TrainingRefused):
    """A refusal of an invitation (sending, cancelling, accepting), fit to show."""


# The partial unique index of migration 0003: one pending invitation per address and course.
PENDING_ONCE = "assignment_pending_once"


EMAIL_LENGTH = Assignment._meta.get_field("email").max_length


REFERENCE_LENGTH = 255  # credits Hold.reference / LedgerTransaction.reference


class InvitationDead(InvitationRefused):
    """An invitation link that can no longer be accepted. `reason` is one of unknown,
    replaced, cancelled, expired, used; `sign_in` says whether signing in is the way on."""

    def __init__(self, message: str, *, reason: str, sign_in: bool = False):
        super().__init__(message)
        self.reason = reason
        self.sign_in = sign_in


class InvitationNotYours(InvitationRefused):
    """Someone signed in with another address opened the link."""


class InvitationShort(InvitationRefused):
    """The credits held for the invitation no longer exist (the manager's lots expired since
    it was sent): accepting is refused and nothing is created."""


@dataclass
class Invited:
    """What an invite did: `sent` new invitations (one hold each), `resent` invitations that
    were already pending and went out again with a new link (no new hold), `rejected` rows
    with the reason."""

    sent: list[Assignment] = field(default_factory=list)
    resent: list[Assignment] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def __iter__(self):
        # `sent, rejected = invite(...)`, as callers wrote it before re-sends existed.
        return iter((self.sent, self.rejected))


def invite(*, manager: CourseManager, level: Level, text: str, token: str) -> Invited:
    """Invite learners by email: one hold of the level's cost each on the manager's account,
    all or none (short: InsufficientCredits). An address with an invitation to this course
    still pending is not invited twice: that invitation is re-sent (`reinvite`: new link,
    same hold, new validity). `token` (one per rendered form) makes a double submission
    return the same invitations."""
    if level.course_id != manager.course_id:
        raise InvitationRefused("That level is not part of this course.")
    emails, rejected = [], []
    for row in split_emails(text):
        email = row.lower()
        if len(email) > EMAIL_LENGTH:
            rejected.append((row[:40] + "…", f"longer than {EMAIL_LENGTH} characters"))
            continue
        try:
            validate_email(email)
        except ValidationError:
            rejected.append((row, "not an email address"))
            continue
        if email in emails:
            rejected.append((row, "listed twice"))
            continue
        emails.append(email)
    # Someone who already accepted this course needs no invitation, and must not tie up a
    # second credit: say so instead.
    enrolled = set(
        Assignment.objects.filter(
            organization=manager.organization,
            course=manager.course,
            email__in=emails,
            status__in=[
                Assignment.Status.ACCEPTED,
                Assignment.Status.STARTED,
                Assignment.Status.COMPLETED,
            ],
        ).values_list("email", flat=True)
    )
    rejected += [
        (email, "already enrolled in this course") for email in emails if email in enrolled
    ]
    emails = [email for email in emails if email not in enrolled]
    if not emails:
        return Invited(rejected=rejected)
    try:
        result = _invite(manager=manager, level=level, emails=emails, token=token)
    except IntegrityError as error:
        if not _is_constraint(error, PENDING_ONCE):
            raise
        # The lock in _invite makes this a backstop for any writer that does not take it:
        # someone created a pending invitation of one of these addresses and committed
        # first. Everything here was rolled back (the hold too); run again, this invite finds
        # that invitation pending and re-sends it instead of failing.
        result = _invite(manager=manager, level=level, emails=emails, token=token)
    result.rejected = rejected
    return result


def _is_constraint(error: IntegrityError, name: str) -> bool:
    diag = getattr(error.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == name


def _invites_one_at_a_time(manager: CourseManager) -> None:
    """Invites to one course of one organization run one after the other (a transaction-level
    advisory lock): the pending check then sees every invitation committed before it, so two
    managers, or two tabs, inviting one address at once end with one invitation and one
    hold. Only invites take this lock, first, so it cannot close a cycle with the ledger's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"training.invite:{manager.organization_id}:{manager.course_id}"],
        )


def _invite(*, manager: CourseManager, level: Level, emails: list[str], token: str) -> Invited:
    key = f"invite:{manager.pk}:{token}"
    with transaction.atomic():
        _invites_one_at_a_time(manager)
        # A replay of a form that has committed: before looking for pending invitations, or
        # it would find its own and re-send them.
        replay = list(
            Assignment.objects.filter(
                hold__placed_by__organization=manager.organization,
                hold__placed_by__idempotency_key=key,
            )
        )
        if replay:
            return Invited(sent=replay)
        # Locked (in one order) before the ledger's locks, as accepting and cancelling do.
        pending = {
            a.email: a
            for a in Assignment.objects.select_for_update(of=("self",))
            .filter(
                organization=manager.organization,
                course=manager.course,
                email__in=emails,
                status=Assignment.Status.INVITED,
            )
            .order_by("pk")
        }
        resent = [reinvite(assignment=a, form_token=token) for a in pending.values()]
        fresh = [email for email in emails if email not in pending]
        if not fresh:
            return Invited(resent=resent)
        expires = timezone.now() + dt.timedelta(days=settings.INVITATION_VALID_DAYS)
        holds = ledger.holds_place_batch(
            account=manager_account_of(manager),
            quantities=[level.credit_cost] * len(fresh),
            references=[f"Invitation: {email}, {level}"[:REFERENCE_LENGTH] for email in fresh],
            idempotency_key=key,
            actor=manager.user,
        )
        existing = {a.hold_id: a for a in Assignment.objects.filter(hold__in=holds)}
        # The ledger replays a key it has seen; the replay check above already answers
        # that case, so this only keeps a replay from creating a second set of rows.
        if existing:
            return Invited(sent=list(existing.values()), resent=resent)
        invitations = Assignment.objects.bulk_create(
            Assignment(
                organization=manager.organization,
                level=level,
                course_id=level.course_id,
                email=email,
                manager=manager.user,
                hold=hold,
                expires_at=expires,
            )
            for email, hold in zip(fresh, holds, strict=True)
        )
        # Written with the invitations and their holds: sent once this commits.
        messages_enqueue(
            messages=[
                invitation_message(invitation=a, organization=manager.organization)
                for a in invitations
            ]
        )
    return Invited(sent=invitations, resent=resent)


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
            raise InvitationRefused(
                f"This invitation is {assignment.get_status_display().lower()}."
            )
        ledger.hold_release(hold=assignment.hold, actor=actor)
        assignment.cancel()
        assignment.save(update_fields=["status"])
    return assignment


# Links made by a re-send derive from the form that asked for it (below).
RESEND_LINKS = uuid.UUID("8d0c5a3e-5b1f-4f1e-9a55-3c3f4f8e2b6a")


def reinvite(*, assignment: Assignment, form_token: str = "") -> Assignment:
    """A new link (the old one dies), the same hold, a new validity, the email again.

    `form_token` (the rendered form's) names the request: its new link is derived from it, so
    a double submission finds its own link already in place and changes and sends nothing,
    instead of killing the link it has just emailed."""
    with transaction.atomic():
        assignment = _locked(assignment)
        if assignment.status != Assignment.Status.INVITED:
            raise InvitationRefused(
                f"This invitation is {assignment.get_status_display().lower()}: invite again."
            )
        new_token = (
            uuid.uuid5(RESEND_LINKS, f"{assignment.pk}:{form_token}")
            if form_token
            else uuid.uuid4()
        )
        if new_token == assignment.token:
            return assignment  # this very request again: its link is the current one
        assignment.replaced_tokens = [*assignment.replaced_tokens, assignment.token]
        assignment.token = new_token
        assignment.expires_at = timezone.now() + dt.timedelta(days=settings.INVITATION_VALID_DAYS)
        assignment.save(update_fields=["token", "replaced_tokens", "expires_at"])
        # In the same transaction as the new link: the old link dies only if its replacement
        # is sure to be sent.
        messages_enqueue(
            messages=[
                invitation_message(invitation=assignment, organization=assignment.organization)
            ]
        )
    return assignment


def invitation_replace(*, assignment: Assignment, email: str, expected_email: str) -> Assignment:
    """Give a pending invitation's seat to someone else (seed 002's turnover): the same hold
    moves with it, never released, so no other invitation can take the credit meanwhile.
    The old link dies (it says it was replaced), the new address gets a link valid from now.
    `expected_email` is the address the manager's page showed: a seat given away meanwhile
    (another tab, a second click) is refused instead of being moved a second time."""
    email = email.strip().lower()
    try:
        if len(email) > 254:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise InvitationRefused(
            "Enter the email address of the person to invite instead."
        ) from None
    with transaction.atomic():
        assignment = _locked(assignment)
        if assignment.status != Assignment.Status.INVITED:
            raise InvitationRefused(
                f"This invitation is {assignment.get_status_display().lower()}: only a pending "
                "invitation can be given to someone else."
            )
        if assignment.email != expected_email.strip().lower():
            raise InvitationRefused(
                f"This seat was given to {assignment.email} meanwhile: nothing was changed."
            )
        if email == assignment.email:
            raise InvitationRefused(f"{email} already has this invitation.")
        if Assignment.objects.filter(
            organization=assignment.organization,
            course=assignment.course,
            email=email,
            status__in=[
                Assignment.Status.INVITED,
                Assignment.Status.ACCEPTED,
                Assignment.Status.STARTED,
                Assignment.Status.COMPLETED,
            ],
        ).exists():
            # As invite() refuses them: one person never ties up a second credit for a course.
            raise InvitationRefused(
                f"{email} is already invited to, taking or done with {assignment.course}."
            )
        now = timezone.now()
        assignment.replaced_tokens = [*assignment.replaced_tokens, assignment.token]
        assignment.token = uuid.uuid4()
        assignment.email, assignment.user = email, None
        assignment.expires_at = now + dt.timedelta(days=settings.INVITATION_VALID_DAYS)
        # The seat is given now: reminders and "not started for two weeks" count from here.
        assignment.created_at = now
        try:
            with transaction.atomic():
                assignment.save(
                    update_fields=[
                        "token", "replaced_tokens", "email", "user", "expires_at", "created_at",
                    ]
                )  # fmt: skip
        except IntegrityError:
            # Invited by another tab at this instant: one pending invitation per address.
            raise InvitationRefused(
                f"{email} was invited to {assignment.course} meanwhile: nothing was changed."
            ) from None
        messages_enqueue(
            messages=[
                invitation_message(invitation=assignment, organization=assignment.organization)
            ]
        )
    return assignment


def invitation_for_link(*, token: uuid.UUID, user: User | None) -> Assignment:
    """The invitation a link names, if `user` (None: not signed in) may still accept it; or
    InvitationDead saying which of unknown, replaced, cancelled, expired or used, or
    InvitationNotYours. Reads only: what the page shows before anything is posted."""
    found = (
        Assignment.objects.select_related("level__course", "organization")
        .filter(token=token)
        .first()
    )
    if found is None:
        raise _dead_link(token)
    _check_open(found, user)
    return found


def _dead_link(token: uuid.UUID) -> InvitationDead:
    if Assignment.objects.filter(replaced_tokens__contains=[token]).exists():
        return InvitationDead(
            "This invitation link is no longer valid: it was replaced by a newer one. Use the "
            "link in the latest invitation email you received.",
            reason="replaced",
        )
    return InvitationDead(
        "This invitation link is no longer valid: check that it is the whole link from your "
        "invitation email.",
        reason="unknown",
    )


def _check_open(assignment: Assignment, user: User | None) -> None:
    """Refuses an invitation that can no longer be accepted, or that is someone else's. The
    person who already accepted it passes: opening the link again is harmless."""
    status = assignment.status
    if status in (
        Assignment.Status.ACCEPTED,
        Assignment.Status.STARTED,
        Assignment.Status.COMPLETED,
    ):
        if user is not None and assignment.user_id == user.pk:
            return
        raise InvitationDead(
            f"This invitation was already accepted. Sign in as {assignment.email} to see your "
            "training.",
            reason="used",
            sign_in=True,
        )
    if status == Assignment.Status.CANCELLED:
        raise InvitationDead(
            "This invitation was cancelled by your manager; ask them for a new one.",
            reason="cancelled",
        )
    if status == Assignment.Status.EXPIRED or (
        assignment.expires_at and assignment.expires_at <= timezone.now()
    ):
        raise InvitationDead(
            "This invitation has expired; ask your manager to re-invite you.", reason="expired"
        )
    if user is not None and user.email.lower() != assignment.email:
        raise InvitationNotYours(
            f"This invitation is for {assignment.email}; you are signed in as {user.email}. "
            "Log out, then open the link again."
        )


def invite_accept(*, token: uuid.UUID, user: User | None, password: str = "") -> Assignment:
    """The learner accepts, signed in as `user` or as a new account with `password`: they
    become a learner member, are enrolled, and the hold is captured, exactly once.

    Everything happens in one transaction with the invitation row locked, after checking it
    can still be accepted: a refusal creates nothing (no account either), and a second tab
    waits for the first, then finds the invitation accepted. Raises InvitationDead,
    InvitationNotYours, InvitationShort, or AccountExists (the address must sign in)."""
    locked = None
    try:
        with transaction.atomic():
            pk = Assignment.objects.filter(token=token).values_list("pk", flat=True).first()
            if pk is None:
                raise _dead_link(token)
            locked = _locked(Assignment(pk=pk))
            if locked.token != token:  # re-invited while this request waited for the row
                raise _dead_link(token)
            _check_open(locked, user)
            if locked.status != Assignment.Status.INVITED:
                return locked  # the same person again: already enrolled, nothing to charge
            if user is None:
                user = learner_account_create(email=locked.email, password=password)
            ledger.hold_capture(hold=locked.hold, actor=user)
            Membership.objects.get_or_create(
                user=user, organization=locked.organization, defaults={"role": "learner"}
            )
            locked.user = user
            locked.accepted_at = timezone.now()
            locked.accept()
            locked.save(update_fields=["user", "accepted_at", "status"])
    except ledger.InsufficientCredits:
        # The held credits' lots expired since the invitation was sent. All of the above was
        # rolled back; the manager is told in a transaction of its own, once a day at most
        # however often the learner retries (the message's key names the day; no cache, so
        # this works with Redis down too).
        if locked.manager_id is not None:
            with transaction.atomic():
                messages_enqueue(
                    messages=[invitation_short_message(invitation=locked, now=timezone.now())]
                )
        raise InvitationShort(
            "The credits reserved for this invitation are no longer available, so it cannot "
            "be accepted right now. Your manager has been told; once they have credits for "
            "this course again, this same link will work. Nothing was created."
        ) from None
    return locked


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
