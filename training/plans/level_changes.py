"""Support's level change (Django admin): within 7 days of the plan's start, an enrollment
moves to another level of its course and the cost difference is settled in credits."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.db import models, transaction
from django.utils import timezone

from accounts.models import Organization, User
from catalog.models import Level
from credits import services as ledger
from credits.models import LedgerTransaction
from training.models import Enrollment, LevelChange, TrainingPlan

from .services import PlanRefused

LEVEL_CHANGE_DAYS = 7


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
    # Plans made before start dates were bounded may start near the last representable day.
    last_day = min(plan.start_date, dt.date.max - dt.timedelta(days=LEVEL_CHANGE_DAYS))
    last_day += dt.timedelta(days=LEVEL_CHANGE_DAYS)
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
