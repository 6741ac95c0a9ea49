"""Training plans. Credits move only through credits/services.py."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import uuid
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models, transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Membership, Organization, User
from catalog.models import CartLine
from credits import services as ledger
from credits.models import LedgerTransaction
from outbox.services import messages_enqueue
from training.common import TrainingRefused, bounded, people_phrase, split_emails
from training.emails import plan_confirmation_messages
from training.models import Enrollment, ItemAssignment, Participant, PlanItem, TrainingPlan

MAX_SEATS = 100_000
# Participant.email's column (Django's EmailField); validate_email alone allows 320.
EMAIL_LENGTH = 254


class PlanRefused(TrainingRefused):
    """A refusal fit to show to the user."""


class PlanChanged(PlanRefused):
    """Confirm users was clicked on a page that no longer shows the plan as it is: nothing
    was charged, and the admin is shown the plan as it is now."""


@dataclass
class Added:
    added: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (row, reason)
    # Items whose seats grew to fit the people added: (item, seats now).
    seats_raised: list[tuple[PlanItem, int]] = field(default_factory=list)


def plan_lock(plan: TrainingPlan) -> TrainingPlan:
    """Every change to a plan's people, seats or confirmation takes the plan row first: one
    lock order, so Remove, Add and Confirm users on one plan happen one after the other."""
    return TrainingPlan.objects.select_for_update(of=("self",)).get(pk=plan.pk)


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


def participants_add(*, plan: TrainingPlan, rows: list[str]) -> Added:
    """Add people by email: members of the organization join as themselves; other addresses
    are invited (an account is created when they accept). Bad rows are reported, the rest
    is kept. Everyone added takes a seat in every item of the plan; an item whose seats are
    all taken gets more seats (the result says which), so the plan's cost always covers its
    people."""
    result = Added()
    with transaction.atomic():
        plan = plan_lock(plan)
        if plan.status in (TrainingPlan.Status.COMPLETED, TrainingPlan.Status.CANCELLED):
            raise PlanRefused("This plan is closed; create a new one.")
        existing = set(
            plan.participants.filter(removed_at__isnull=True).values_list("email", flat=True)
        )
        # Someone removed earlier comes back as the same participant, with fresh seats.
        removed = {p.email: p for p in plan.participants.filter(removed_at__isnull=False)}
        members = dict(
            Membership.objects.filter(organization=plan.organization).values_list(
                "user__email", "user_id"
            )
        )
        new, returning = [], []
        for row in rows:
            email = row.strip().lower()
            try:
                if len(email) > EMAIL_LENGTH:
                    raise ValidationError("too long")
                validate_email(email)
            except ValidationError:
                result.rejected.append((row, "not an email address"))
                continue
            if email in existing:
                result.rejected.append((row, "already in this plan"))
                continue
            existing.add(email)
            if email in removed:
                returning.append(removed[email])
            else:
                new.append(Participant(plan=plan, email=email, user_id=members.get(email)))
            result.added.append(email)
        if not new and not returning:
            return result
        Participant.objects.bulk_create(new)
        for person in returning:
            # A new link: the one sent before the removal must not come back to life.
            person.removed_at, person.confirmed_at = None, None
            person.invite_token = uuid.uuid4()
            person.user_id = members.get(person.email, person.user_id)
            person.save(update_fields=["removed_at", "confirmed_at", "invite_token", "user"])
        items = list(plan.items.all())
        ItemAssignment.objects.bulk_create(
            ItemAssignment(item=item, participant=person)
            for person in new + returning
            for item in items
        )
        filled = _filled_seats(plan)
        for item in items:
            if filled.get(item.pk, 0) > item.seats:
                item.seats = filled[item.pk]
                item.save(update_fields=["seats"])
                result.seats_raised.append((item, item.seats))
    return result


def _filled_seats(plan: TrainingPlan) -> dict[int, int]:
    """Seats taken per item: assignments of people still in the plan."""
    rows = (
        ItemAssignment.objects.filter(item__plan=plan, participant__removed_at__isnull=True)
        .values("item_id")
        .annotate(n=models.Count("id"))
    )
    return {row["item_id"]: row["n"] for row in rows}


def participants_add_text(*, plan: TrainingPlan, text: str) -> Added:
    return participants_add(plan=plan, rows=split_emails(text))


def participants_add_csv(*, plan: TrainingPlan, data: bytes) -> Added:
    """A CSV with an `email` column (or emails in the first column, without a header)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PlanRefused("The file is not UTF-8 text; export it as CSV (UTF-8).") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        # A cell beyond the csv module's limit (128 kB) or a broken quote: not a list of emails.
        raise PlanRefused(
            "The file could not be read as CSV (a cell is too long or a quote is not closed); "
            "export it again as CSV (UTF-8) with one email address per row."
        ) from None
    if not rows:
        raise PlanRefused("The file is empty.")
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("email") if "email" in header else 0
    body = rows[1:] if "email" in header else rows
    return participants_add(
        plan=plan, rows=[row[column] if len(row) > column else "" for row in body if any(row)]
    )


@dataclass(frozen=True)
class ItemFigures:
    item: PlanItem
    filled: int
    pending: int

    @property
    def open(self) -> int:
        return max(self.item.seats - self.filled, 0)

    @property
    def planned_cost(self) -> int:
        return self.item.seats * self.item.level.credit_cost


@dataclass(frozen=True)
class PlanCost:
    """What the plan page shows and the next Confirm users takes."""

    items: list[ItemFigures]
    pending_people: int
    total: int  # credits the next Confirm users takes: every pending seat
    snapshot: str  # digest of exactly those seats, carried by the Confirm form

    @property
    def planned(self) -> int:
        """Every seat of every item: what the cart showed before checkout."""
        return sum(figures.planned_cost for figures in self.items)

    @property
    def seats(self) -> int:
        return sum(figures.item.seats for figures in self.items)

    @property
    def filled(self) -> int:
        return sum(figures.filled for figures in self.items)


def _pending_assignments(plan: TrainingPlan) -> list[ItemAssignment]:
    return list(
        ItemAssignment.objects.filter(
            item__plan=plan, confirmed_at__isnull=True, participant__removed_at__isnull=True
        )
        .select_related("item__level__course", "participant")
        .order_by("id")
    )


def _snapshot(pending: list[ItemAssignment]) -> str:
    """Names the exact seats (assignment, person, level, cost) a Confirm form was shown."""
    parts = [
        f"{a.pk}:{a.participant_id}:{a.item.level_id}:{a.item.level.credit_cost}" for a in pending
    ]
    total = sum(a.item.level.credit_cost for a in pending)
    return hashlib.sha256(f"{total}|{','.join(parts)}".encode()).hexdigest()


def plan_cost(*, plan: TrainingPlan) -> PlanCost:
    """Credits the next Confirm users will take: each pending seat at its level's cost."""
    pending = _pending_assignments(plan)
    filled = _filled_seats(plan)
    pending_per_item: dict[int, int] = {}
    for assignment in pending:
        pending_per_item[assignment.item_id] = pending_per_item.get(assignment.item_id, 0) + 1
    items = [
        ItemFigures(
            item=item, filled=filled.get(item.pk, 0), pending=pending_per_item.get(item.pk, 0)
        )
        for item in plan.items.select_related("level__course").order_by("id")
    ]
    return PlanCost(
        items=items,
        pending_people=len({a.participant_id for a in pending}),
        total=sum(a.item.level.credit_cost for a in pending),
        snapshot=_snapshot(pending),
    )


@dataclass(frozen=True)
class Confirmation:
    people: int
    credits: int
    replayed: bool = False


def plan_confirm(
    *, plan: TrainingPlan, user: User, token: str, snapshot: str | None = None
) -> Confirmation:
    """Confirm users: every pending seat of the plan, in one database transaction: redeemed
    (policy `confirm`) or held (policy `start`). It confirms exactly what the admin saw:
    `snapshot` names the seats the page showed, and if the plan changed since (a colleague
    added or removed someone, another tab confirmed it) nothing is charged and PlanChanged
    says so. `token` (one per rendered form) makes a double click or a retry return the first
    result without touching anyone added since. (`snapshot=None` skips the check, for callers
    that show no page: scripts and tests.) The plan row is locked, so Remove, Add and
    a second Confirm wait for this one. Short under policy `buy`: nothing changes and
    InsufficientCredits says by how much. A constant number of SQL statements, whatever the
    number of people."""
    organization = plan.organization
    with transaction.atomic():
        plan = plan_lock(plan)
        key = f"plan:{plan.pk}:confirm:{token}"
        first = LedgerTransaction.objects.filter(
            organization=organization, idempotency_key=key
        ).first()
        if first is not None:
            return _replayed(first)
        if not can_proceed(plan.confirm):
            raise PlanRefused("This plan is closed.")
        if not plan.items.exists():
            raise PlanRefused("Add at least one course level to the plan.")
        pending = _pending_assignments(plan)
        if snapshot is not None and _snapshot(pending) != snapshot:
            if not pending:
                raise PlanChanged(
                    "Everyone in this plan was already confirmed (in another tab or by a "
                    "colleague); nothing was charged again."
                )
            raise PlanChanged(
                "This plan changed since you loaded it, so nothing was charged. Here it is as "
                "it is now: check the people and the cost, then confirm again."
            )
        if not pending:
            return Confirmation(people=0, credits=0)
        people = {a.participant_id: a.participant for a in pending}
        # Everyone's email is written here, in this transaction (so rolled back with it if the
        # ledger refuses), and before the ledger's locks: rendering thousands of emails never
        # lengthens them. One statement; the outbox sends them once this commits.
        messages_enqueue(
            messages=plan_confirmation_messages(
                plan=plan, organization=organization, people=people.values(), cause=key
            )
        )
        pool = ledger.pool_account(organization=organization)
        overage = organization.when_short == Organization.WhenShort.BILL_OVERAGE
        total = sum(a.item.level.credit_cost for a in pending)
        if organization.redemption_point == Organization.RedemptionPoint.START:
            holds = ledger.holds_place_batch(
                account=pool,
                quantities=[a.item.level.credit_cost for a in pending],
                references=[_hold_reference(plan, a) for a in pending],
                idempotency_key=key,
                actor=user,
                allow_overage=overage,
            )
            enrollments = [
                Enrollment(
                    participant=a.participant,
                    level=a.item.level,
                    cost=a.item.level.credit_cost,
                    hold=hold,
                )
                for a, hold in zip(pending, holds, strict=True)
            ]
        else:
            redemption = ledger.credits_redeem(
                account=pool,
                quantity=total,
                reference=bounded(f"Training plan: {plan.name} ({people_phrase(len(people))})"),
                idempotency_key=key,
                actor=user,
                allow_overage=overage,
            )
            enrollments = [
                Enrollment(
                    participant=a.participant,
                    level=a.item.level,
                    cost=a.item.level.credit_cost,
                    redemption=redemption,
                )
                for a in pending
            ]
        Enrollment.objects.bulk_create(enrollments)
        now = timezone.now()
        ItemAssignment.objects.filter(pk__in=[a.pk for a in pending]).update(confirmed_at=now)
        Participant.objects.filter(pk__in=list(people), confirmed_at__isnull=True).update(
            confirmed_at=now
        )
        plan.confirm()
        plan.save(update_fields=["status"])
    return Confirmation(people=len(people), credits=total)


def _replayed(first: LedgerTransaction) -> Confirmation:
    """The result of the click that already used this form's token."""
    enrollments = Enrollment.objects.filter(
        models.Q(redemption=first) | models.Q(hold__placed_by=first)
    )
    figures = enrollments.aggregate(
        people=models.Count("participant", distinct=True), credits=models.Sum("cost")
    )
    return Confirmation(
        people=figures["people"] or 0, credits=figures["credits"] or 0, replayed=True
    )


def _hold_reference(plan: TrainingPlan, assignment: ItemAssignment) -> str:
    return bounded(f"{plan.name}: {assignment.participant.email}, {assignment.item.level}")


def participant_remove(*, participant: Participant, user: User) -> str:
    """Remove someone who has not started. Policy `start`: their holds are released (seed
    002: protected from turnover). Policy `confirm`: redeemed credits are not returned (seed
    000: assignment is the admin's responsibility). Returns what happened, to show."""
    with transaction.atomic():
        # The plan first: a Confirm users running now finishes before this looks, so the
        # person is either confirmed (and their holds released below) or never charged.
        plan_lock(participant.plan)
        participant = Participant.objects.select_for_update(of=("self",)).get(pk=participant.pk)
        if participant.removed_at:
            return f"{participant.email} was already removed."
        # Locked, and read after the lock: a Start committed meanwhile is seen here.
        enrollments = list(
            participant.enrollments.select_for_update(of=("self",))
            .select_related("hold")
            .exclude(status=Enrollment.Status.REMOVED)
        )
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
        # Their seats are free again; the enrollments keep what happened to them.
        ItemAssignment.objects.filter(participant=participant).delete()
    if released:
        return f"{participant.email} removed; {released} assigned credits are available again."
    if any(e.redemption_id for e in enrollments):
        return (
            f"{participant.email} removed. The credits redeemed for them are not returned: "
            "assigning credits is the organization's responsibility."
        )
    return f"{participant.email} removed."


def plan_complete_if_done(plan: TrainingPlan) -> None:
    """A confirmed plan is completed once nobody still in it has anything left to finish."""
    open_work = Enrollment.objects.filter(
        participant__plan=plan, participant__removed_at__isnull=True
    ).exclude(status__in=[Enrollment.Status.COMPLETED, Enrollment.Status.REMOVED])
    pending = ItemAssignment.objects.filter(
        item__plan=plan, confirmed_at__isnull=True, participant__removed_at__isnull=True
    )
    if can_proceed(plan.complete) and not open_work.exists() and not pending.exists():
        plan.complete()
        plan.save(update_fields=["status"])


def plan_cancel(*, plan: TrainingPlan) -> None:
    """Drop a draft: nothing was charged yet, so nothing is to give back."""
    with transaction.atomic():
        plan = plan_lock(plan)
        if not can_proceed(plan.cancel):
            raise PlanRefused("Only a draft plan can be cancelled; this one has confirmed people.")
        plan.cancel()
        plan.save(update_fields=["status"])


def item_seats_set(*, item: PlanItem, seats: int) -> PlanItem:
    """Change an item's seats; never below the people already in it."""
    if not 1 <= seats <= MAX_SEATS:
        raise PlanRefused(f"Choose between 1 and {MAX_SEATS:,} seats.")
    with transaction.atomic():
        plan = plan_lock(item.plan)
        if plan.status in (TrainingPlan.Status.COMPLETED, TrainingPlan.Status.CANCELLED):
            raise PlanRefused("This plan is closed; create a new one.")
        item = PlanItem.objects.select_for_update().get(pk=item.pk)
        filled = _filled_seats(plan).get(item.pk, 0)
        if seats < filled:
            raise PlanRefused(
                f"{item.level} has {people_phrase(filled)} in it: remove people from it before "
                f"going below {filled:,} seats."
            )
        item.seats = seats
        item.save(update_fields=["seats"])
    return item


def assignment_toggle(*, item: PlanItem, participant: Participant) -> bool:
    """Put a pending person in an item's seat, or take them out of it. A confirmed seat is
    not changed here (remove the person instead). Returns whether they are in it now."""
    with transaction.atomic():
        plan = plan_lock(item.plan)
        if plan.status in (TrainingPlan.Status.COMPLETED, TrainingPlan.Status.CANCELLED):
            raise PlanRefused("This plan is closed; create a new one.")
        participant = Participant.objects.get(pk=participant.pk, plan=plan)
        if participant.removed_at:
            raise PlanRefused(f"{participant.email} was removed from this plan.")
        existing = ItemAssignment.objects.filter(item=item, participant=participant).first()
        if existing is not None:
            if existing.confirmed_at:
                raise PlanRefused(
                    f"{participant.email} is already confirmed in {item.level}: remove them "
                    "from the plan instead."
                )
            existing.delete()
            return False
        item = PlanItem.objects.select_for_update().get(pk=item.pk)
        if _filled_seats(plan).get(item.pk, 0) >= item.seats:
            raise PlanRefused(f"Every seat of {item.level} is taken: add a seat first.")
        ItemAssignment.objects.create(item=item, participant=participant)
        return True
