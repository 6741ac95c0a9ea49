"""Training plans. Credits move only through credits/services.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Membership, Organization, User
from catalog.models import CartLine, Level
from credits import services as ledger

from .models import Enrollment, Participant, PlanItem, TrainingPlan
from .tasks import send_assignment_emails

LEVEL_CHANGE_DAYS = 7


class PlanRefused(Exception):
    """A refusal fit to show to the user."""


@dataclass
class Added:
    added: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (row, reason)


def plan_create_from_cart(
    *, organization: Organization, user: User, name: str, start_date: dt.date
) -> TrainingPlan:
    """Checkout: the cart becomes a draft plan (nothing is deducted) and empties."""
    if not name.strip():
        raise PlanRefused("Give the plan a name.")
    with transaction.atomic():
        lines = list(
            CartLine.objects.select_for_update().filter(organization=organization, user=user)
        )
        if not lines:
            raise PlanRefused("Your cart is empty.")
        plan = TrainingPlan.objects.create(
            organization=organization, name=name.strip(), start_date=start_date, created_by=user
        )
        PlanItem.objects.bulk_create(
            PlanItem(plan=plan, level_id=line.level_id, seats=line.seats) for line in lines
        )
        CartLine.objects.filter(pk__in=[line.pk for line in lines]).delete()
    return plan


def split_emails(text: str) -> list[str]:
    for separator in ",;\t":
        text = text.replace(separator, "\n")
    return [part.strip() for part in text.splitlines() if part.strip()]


def participants_add(*, plan: TrainingPlan, rows: list[str]) -> Added:
    """Add people by email: members of the organization join as themselves; other addresses
    are invited (an account is created when they accept). Bad rows are reported, the rest
    is kept."""
    if plan.status in (TrainingPlan.Status.COMPLETED, TrainingPlan.Status.CANCELLED):
        raise PlanRefused("This plan is closed; create a new one.")
    result = Added()
    existing = set(plan.participants.values_list("email", flat=True))
    members = dict(
        Membership.objects.filter(organization=plan.organization).values_list(
            "user__email", "user_id"
        )
    )
    new = []
    for row in rows:
        email = row.strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            result.rejected.append((row, "not an email address"))
            continue
        if email in existing:
            result.rejected.append((row, "already in this plan"))
            continue
        existing.add(email)
        new.append(Participant(plan=plan, email=email, user_id=members.get(email)))
        result.added.append(email)
    Participant.objects.bulk_create(new)
    return result


def participants_add_text(*, plan: TrainingPlan, text: str) -> Added:
    return participants_add(plan=plan, rows=split_emails(text))


def participants_add_csv(*, plan: TrainingPlan, data: bytes) -> Added:
    """A CSV with an `email` column (or emails in the first column, without a header)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PlanRefused("The file is not UTF-8 text; export it as CSV (UTF-8).") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise PlanRefused("The file is empty.")
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("email") if "email" in header else 0
    body = rows[1:] if "email" in header else rows
    return participants_add(
        plan=plan, rows=[row[column] if len(row) > column else "" for row in body if any(row)]
    )


def _pending(plan: TrainingPlan) -> list[Participant]:
    return list(plan.participants.filter(confirmed_at__isnull=True, removed_at__isnull=True))


def plan_cost(*, plan: TrainingPlan) -> dict:
    """Credits the next Confirm users will take: each pending person in every item."""
    per_person = sum(item.level.credit_cost for item in plan.items.select_related("level"))
    pending = plan.participants.filter(confirmed_at__isnull=True, removed_at__isnull=True)
    count = pending.count()
    return {"per_person": per_person, "pending": count, "total": per_person * count}


def plan_confirm(*, plan: TrainingPlan, user: User, token: str) -> int:
    """Confirm users: every not-yet-confirmed participant in every item, in one database
    transaction: redeemed (policy `confirm`) or held (policy `start`). The plan row is locked,
    so a second tab finds them confirmed; `token` (one per rendered form) makes a double click
    or a retry replay the same ledger transaction. Short under policy `buy`: nothing changes
    and InsufficientCredits says by how much. A constant number of SQL statements, whatever
    the number of people. Returns how many people were confirmed."""
    organization = plan.organization
    with transaction.atomic():
        plan = TrainingPlan.objects.select_for_update().get(pk=plan.pk)
        if not can_proceed(plan.confirm):
            raise PlanRefused("This plan is closed.")
        people = _pending(plan)
        items = list(plan.items.select_related("level"))
        if not items:
            raise PlanRefused("Add at least one course level to the plan.")
        if not people:
            return 0
        pool = ledger.pool_account(organization=organization)
        overage = organization.when_short == Organization.WhenShort.BILL_OVERAGE
        key = f"plan:{plan.pk}:confirm:{token}"
        pairs = [(person, item.level) for person in people for item in items]
        if organization.redemption_point == Organization.RedemptionPoint.START:
            holds = ledger.holds_place_batch(
                account=pool,
                quantities=[level.credit_cost for _, level in pairs],
                references=[f"{plan.name}: {p.email}, {level}" for p, level in pairs],
                idempotency_key=key,
                actor=user,
                allow_overage=overage,
            )
            enrollments = [
                Enrollment(participant=p, level=level, cost=level.credit_cost, hold=hold)
                for (p, level), hold in zip(pairs, holds, strict=True)
            ]
        else:
            redemption = ledger.credits_redeem(
                account=pool,
                quantity=sum(level.credit_cost for _, level in pairs),
                reference=f"Training plan: {plan.name} ({len(people)} people)",
                idempotency_key=key,
                actor=user,
                allow_overage=overage,
            )
            enrollments = [
                Enrollment(
                    participant=p, level=level, cost=level.credit_cost, redemption=redemption
                )
                for p, level in pairs
            ]
        Enrollment.objects.bulk_create(enrollments)
        Participant.objects.filter(pk__in=[p.pk for p in people]).update(
            confirmed_at=timezone.now()
        )
        plan.confirm()
        plan.save(update_fields=["status"])
        ids = [p.pk for p in people]
        transaction.on_commit(lambda: send_assignment_emails.delay(ids))
    return len(people)


def participant_remove(*, participant: Participant, user: User) -> str:
    """Remove someone who has not started. Policy `start`: their holds are released (seed
    002: protected from turnover). Policy `confirm`: redeemed credits are not returned (seed
    000: assignment is the admin's responsibility). Returns what happened, to show."""
    with transaction.atomic():
        participant = Participant.objects.select_for_update().get(pk=participant.pk)
        if participant.removed_at:
            return f"{participant.email} was already removed."
        enrollments = list(participant.enrollments.select_related("hold"))
        if any(e.status != Enrollment.Status.ASSIGNED for e in enrollments):
            raise PlanRefused(f"{participant.email} has started: they can no longer be removed.")
        released = 0
        for enrollment in enrollments:
            if enrollment.hold_id and enrollment.hold.status == "active":
                ledger.hold_release(hold=enrollment.hold, actor=user)
                released += enrollment.cost
            enrollment.remove()
            enrollment.save(update_fields=["status"])
        participant.removed_at = timezone.now()
        participant.save(update_fields=["removed_at"])
    if released:
        return f"{participant.email} removed; {released} assigned credits are available again."
    if any(e.redemption_id for e in enrollments):
        return (
            f"{participant.email} removed. The credits redeemed for them are not returned: "
            "assigning credits is the organization's responsibility."
        )
    return f"{participant.email} removed."


def enrollment_start(*, enrollment: Enrollment, user: User) -> Enrollment:
    """The learner starts: under policy `start` the hold is captured now (exactly once)."""
    organization = enrollment.participant.plan.organization
    with transaction.atomic():
        enrollment = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
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
        _complete_if_done(enrollment.participant.plan)
    return enrollment


def _complete_if_done(plan: TrainingPlan) -> None:
    """A confirmed plan is completed once nobody still in it has anything left to finish."""
    open_work = Enrollment.objects.filter(
        participant__plan=plan, participant__removed_at__isnull=True
    ).exclude(status__in=[Enrollment.Status.COMPLETED, Enrollment.Status.REMOVED])
    pending = plan.participants.filter(confirmed_at__isnull=True, removed_at__isnull=True)
    if can_proceed(plan.complete) and not open_work.exists() and not pending.exists():
        plan.complete()
        plan.save(update_fields=["status"])


def plan_cancel(*, plan: TrainingPlan) -> None:
    """Drop a draft: nothing was charged yet, so nothing is to give back."""
    with transaction.atomic():
        plan = TrainingPlan.objects.select_for_update().get(pk=plan.pk)
        if not can_proceed(plan.cancel):
            raise PlanRefused("Only a draft plan can be cancelled; this one has confirmed people.")
        plan.cancel()
        plan.save(update_fields=["status"])


def enrollment_change_level(
    *, enrollment: Enrollment, level: Level, staff: User, reason: str
) -> Enrollment:
    """Support moves an enrollment to another level of the same course, until 7 days after
    the plan's start date; the cost difference is settled through the ledger."""
    plan = enrollment.participant.plan
    zone = zoneinfo.ZoneInfo(plan.organization.time_zone)
    last_day = plan.start_date + dt.timedelta(days=LEVEL_CHANGE_DAYS)
    if timezone.now().astimezone(zone).date() > last_day:
        raise PlanRefused(
            f"Level changes are possible until {last_day:%b %-d, %Y} (7 days after the plan "
            "started); this one is too late."
        )
    if level.course_id != enrollment.level.course_id:
        raise PlanRefused("The new level must be of the same course.")
    if level.pk == enrollment.level_id:
        raise PlanRefused("That is already the enrollment's level.")
    if not reason.strip():
        raise PlanRefused("Give a reason.")
    with transaction.atomic():
        enrollment = (
            Enrollment.objects.select_for_update(of=("self",))
            .select_related("hold")
            .get(pk=enrollment.pk)
        )
        pool = ledger.pool_account(organization=plan.organization)
        difference = level.credit_cost - enrollment.cost
        key = f"enrollment:{enrollment.pk}:level:{enrollment.level_id}->{level.pk}"
        if enrollment.hold_id and enrollment.hold.status == "active":
            ledger.hold_release(hold=enrollment.hold, actor=staff)
            enrollment.hold = ledger.hold_place(
                account=pool,
                quantity=level.credit_cost,
                reference=f"Level change: {reason}",
                idempotency_key=key,
                actor=staff,
            )
        elif difference:
            ledger.credits_adjust(
                account=pool,
                quantity=-difference,
                reason=f"Level change of enrollment {enrollment.pk}: {reason}",
                actor=staff,
                idempotency_key=key,
            )
        enrollment.level = level
        enrollment.cost = level.credit_cost
        enrollment.save(update_fields=["level", "cost", "hold"])
    return enrollment
