"""Training plans. Credits move only through credits/services.py."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zoneinfo
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models, transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Membership, Organization, User
from catalog.models import CartLine, Level
from config.errors import Refusal
from credits import services as ledger
from credits.models import LedgerTransaction

from .models import (
    Enrollment,
    ItemAssignment,
    LevelChange,
    Participant,
    PlanItem,
    TrainingPlan,
)
from .tasks import send_assignment_emails

LEVEL_CHANGE_DAYS = 7
MAX_SEATS = 100_000


class PlanRefused(Refusal):
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


def _lock_plan(plan: TrainingPlan) -> TrainingPlan:
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


def split_emails(text: str) -> list[str]:
    for separator in ",;\t":
        text = text.replace(separator, "\n")
    return [part.strip() for part in text.splitlines() if part.strip()]


def participants_add(*, plan: TrainingPlan, rows: list[str]) -> Added:
    """Add people by email: members of the organization join as themselves; other addresses
    are invited (an account is created when they accept). Bad rows are reported, the rest
    is kept. Everyone added takes a seat in every item of the plan; an item whose seats are
    all taken gets more seats (the result says which), so the plan's cost always covers its
    people."""
    result = Added()
    with transaction.atomic():
        plan = _lock_plan(plan)
        if plan.status in (TrainingPlan.Status.COMPLETED, TrainingPlan.Status.CANCELLED):
            raise PlanRefused("This plan is closed; create a new one.")
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
        if not new:
            return result
        Participant.objects.bulk_create(new)
        items = list(plan.items.all())
        ItemAssignment.objects.bulk_create(
            ItemAssignment(item=item, participant=person) for person in new for item in items
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
        plan = _lock_plan(plan)
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
        pool = ledger.pool_account(organization=organization)
        overage = organization.when_short == Organization.WhenShort.BILL_OVERAGE
        people = {a.participant_id: a.participant for a in pending}
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
                reference=_bounded(f"Training plan: {plan.name} ({people_phrase(len(people))})"),
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
        ids = list(people)
        transaction.on_commit(lambda: send_assignment_emails.delay(ids))
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


def people_phrase(count: int) -> str:
    """ "1 person", "1,204 people"."""
    return f"{count:,} {'person' if count == 1 else 'people'}"


def _bounded(text: str, limit: int = 255) -> str:
    """Ledger references are 255 characters; a long plan name is shortened, not refused."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hold_reference(plan: TrainingPlan, assignment: ItemAssignment) -> str:
    return _bounded(f"{plan.name}: {assignment.participant.email}, {assignment.item.level}")


def participant_remove(*, participant: Participant, user: User) -> str:
    """Remove someone who has not started. Policy `start`: their holds are released (seed
    002: protected from turnover). Policy `confirm`: redeemed credits are not returned (seed
    000: assignment is the admin's responsibility). Returns what happened, to show."""
    with transaction.atomic():
        # The plan first: a Confirm users running now finishes before this looks, so the
        # person is either confirmed (and their holds released below) or never charged.
        _lock_plan(participant.plan)
        participant = Participant.objects.select_for_update(of=("self",)).get(pk=participant.pk)
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
    pending = ItemAssignment.objects.filter(
        item__plan=plan, confirmed_at__isnull=True, participant__removed_at__isnull=True
    )
    if can_proceed(plan.complete) and not open_work.exists() and not pending.exists():
        plan.complete()
        plan.save(update_fields=["status"])


def plan_cancel(*, plan: TrainingPlan) -> None:
    """Drop a draft: nothing was charged yet, so nothing is to give back."""
    with transaction.atomic():
        plan = _lock_plan(plan)
        if not can_proceed(plan.cancel):
            raise PlanRefused("Only a draft plan can be cancelled; this one has confirmed people.")
        plan.cancel()
        plan.save(update_fields=["status"])


def item_seats_set(*, item: PlanItem, seats: int) -> PlanItem:
    """Change an item's seats; never below the people already in it."""
    if not 1 <= seats <= MAX_SEATS:
        raise PlanRefused(f"Choose between 1 and {MAX_SEATS:,} seats.")
    with transaction.atomic():
        plan = _lock_plan(item.plan)
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
        plan = _lock_plan(item.plan)
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


def enrollment_change_level(
    *, enrollment: Enrollment, level: Level, staff: User, reason: str
) -> LevelChange:
    """Support moves an enrollment to another level of its course, until 7 days after the
    plan's start date, and the cost difference is settled through the ledger. Returns the
    LevelChange it recorded, whose id keys every ledger transaction it caused.

    - Credits still held (policy `start`, not started yet): the hold is released and one of
      the new cost placed.
    - Credits charged (policy `confirm`, or `start` once the learner started): a dearer level
      redeems the difference from the pool (as overage when the organization bills it); a
      cheaper one gives the difference back from the enrollment's charges, newest first,
      into the lots they took it from (`credits_reverse`). What cannot come back (lots that
      expired or were revoked since, credits billed as overage) is recorded as not returned.

    Every refusal is PlanRefused, fit to show, and changes nothing: too late, another course,
    the same level, no reason, not enough credits, or any other refusal of the ledger.
    """
    if not reason.strip():
        raise PlanRefused("Give a reason.")
    try:
        with transaction.atomic():
            return _change_level(enrollment=enrollment, level=level, staff=staff, reason=reason)
    except ledger.InsufficientCredits as short:
        raise PlanRefused(
            f"Not enough credits to move this enrollment to {level}: {short.available:,} "
            f"available, {_credits(short.shortfall)} short. Nothing was changed; add credits "
            "or choose another level."
        ) from short
    except ledger.CreditsError as refusal:
        raise PlanRefused(f"The ledger refused this level change: {refusal}") from refusal


def _credits(count: int) -> str:
    return f"{count:,} credit{'' if count == 1 else 's'}"


def _change_level(*, enrollment: Enrollment, level: Level, staff: User, reason: str) -> LevelChange:
    # The plan row, then the enrollment: the order Remove and Confirm users keep, so a
    # removal (which releases the same hold) and this change take turns instead of
    # deadlocking, and changes of one enrollment run one after the other.
    plan_id = Enrollment.objects.values_list("participant__plan_id", flat=True).get(
        pk=enrollment.pk
    )
    plan = (
        TrainingPlan.objects.select_for_update(of=("self",))
        .select_related("organization")
        .get(pk=plan_id)
    )
    Enrollment.objects.select_for_update().filter(pk=enrollment.pk).values_list("pk").get()
    # Read after the lock, in a statement of its own: a start committed while this waited
    # has captured the hold, and the locking statement would still show the hold as it was.
    enrollment = Enrollment.objects.select_related("hold__account", "level", "participant").get(
        pk=enrollment.pk
    )
    organization = plan.organization
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    last_day = plan.start_date + dt.timedelta(days=LEVEL_CHANGE_DAYS)
    if timezone.now().astimezone(zone).date() > last_day:
        raise PlanRefused(
            f"Level changes are possible until {last_day:%b %-d, %Y} (7 days after the plan "
            "started); this one is too late."
        )
    if enrollment.status == Enrollment.Status.REMOVED:
        raise PlanRefused(f"{enrollment.participant} was removed from this plan.")
    if level.course_id != enrollment.level.course_id:
        raise PlanRefused("The new level must be of the same course.")
    if level.pk == enrollment.level_id:
        raise PlanRefused("That is already the enrollment's level.")
    change = LevelChange.objects.create(
        enrollment=enrollment,
        from_level=enrollment.level,
        to_level=level,
        from_cost=enrollment.cost,
        to_cost=level.credit_cost,
        reason=reason.strip(),
        staff=staff,
    )
    key = f"level-change:{change.pk}"
    label = f"Level change #{change.pk}: {enrollment.participant.email}, {level}"[:255]
    overage = organization.when_short == Organization.WhenShort.BILL_OVERAGE
    hold = enrollment.hold
    if hold is not None and hold.status == "active" and hold.quantity == level.credit_cost:
        pass  # Not started, and the levels cost the same: the hold stays as it is.
    elif hold is not None and hold.status != "captured":
        # Not started: nothing is charged yet, the hold just follows the cost. (A hold found
        # released belongs to an enrollment an earlier, key-reusing change left without
        # one; it gets its new hold without a release.)
        if hold.status == "active":
            change.released = ledger.hold_release(hold=hold, actor=staff)
        change.hold = ledger.hold_place(
            account=hold.account,
            quantity=level.credit_cost,
            reference=label,
            idempotency_key=f"{key}:hold",
            actor=staff,
            allow_overage=overage,
        )
        enrollment.hold = change.hold
    elif change.to_cost > change.from_cost:
        change.charge = ledger.credits_redeem(
            account=ledger.pool_account(organization=organization),
            quantity=change.to_cost - change.from_cost,
            reference=label,
            idempotency_key=f"{key}:charge",
            actor=staff,
            allow_overage=overage,
        )
        change.credits_moved = change.charge.quantity
    elif change.to_cost < change.from_cost:
        reversals = _give_back(
            enrollment, change, change.from_cost - change.to_cost, key=key, staff=staff
        )
        change.reversals.set(reversals)
    change.save(
        update_fields=["credits_moved", "credits_not_returned", "charge", "released", "hold"]
    )
    enrollment.level = level
    enrollment.cost = level.credit_cost
    enrollment.save(update_fields=["level", "cost", "hold"])
    return change


def _give_back(
    enrollment: Enrollment, change: LevelChange, quantity: int, *, key: str, staff: User
) -> list[LedgerTransaction]:
    """Reverse `quantity` credits from what the enrollment was charged, newest charge first:
    its earlier level changes' redemptions, then the first charge (the plan's redemption, or
    the capture of its hold when the learner started). Each charge gives back no more than
    the enrollment's part of it less what its earlier level changes took back from it."""
    earlier = enrollment.level_changes.exclude(pk=change.pk)
    charges = [
        (row.charge, row.charge.quantity)
        for row in earlier.filter(charge__isnull=False).select_related("charge").order_by("-pk")
    ]
    hold = enrollment.hold
    if hold is not None and hold.status == "captured":
        charges.append((hold.resolved_by, hold.quantity))
    elif enrollment.redemption_id:
        # One redemption pays for the whole plan; the enrollment's part is what it cost then,
        # before any level change.
        first = earlier.order_by("pk").first()
        charges.append((enrollment.redemption, first.from_cost if first else change.from_cost))
    taken_back: dict[int, int] = {}
    for original_id, part in LevelChange.reversals.through.objects.filter(
        levelchange__enrollment=enrollment
    ).values_list("ledgertransaction__reversal_of_id", "ledgertransaction__quantity"):
        taken_back[original_id] = taken_back.get(original_id, 0) + part
    reversals = []
    left = quantity
    for charge, share in charges:
        # Never ask the ledger for more than the charge has left: changes made before level
        # changes were recorded (settled by adjustment) can make a share look larger than it
        # is. Every enrollment the charge paid for is in this plan, whose row is locked, so
        # what is left cannot change before the reversal below.
        left_in_charge = charge.quantity - (
            charge.reversals.aggregate(total=models.Sum("quantity"))["total"] or 0
        )
        part = min(left, share - taken_back.get(charge.pk, 0), left_in_charge)
        if part <= 0:
            continue
        reversal = ledger.credits_reverse(
            original=charge,
            quantity=part,
            reason=f"Level change #{change.pk}: {change.reason}",
            idempotency_key=f"{key}:reverse:{charge.pk}",
            actor=staff,
        )
        figures = ledger.reversal_figures(reversal=reversal)
        change.credits_moved -= figures.returned
        change.credits_not_returned += figures.lapsed + figures.overage
        reversals.append(reversal)
        left -= part
        if left == 0:
            break
    # Charges recorded before level changes were (an old change settled by adjustment) may
    # not cover the difference: what no charge accounts for is not given back.
    change.credits_not_returned += left
    return reversals
