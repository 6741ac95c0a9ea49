import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django_fsm import FSMField, transition


class TrainingPlan(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        CONFIRMED = "confirmed", "Confirmed"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="training_plans"
    )
    name = models.CharField(max_length=200)
    start_date = models.DateField()
    status = FSMField(default=Status.DRAFT, choices=Status.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The plans list, newest first, a page at a time.
            models.Index(fields=["organization", "-created_at", "-id"], name="plan_org_newest"),
        ]

    def __str__(self) -> str:
        return self.name

    @transition(field=status, source=[Status.DRAFT, Status.CONFIRMED], target=Status.CONFIRMED)
    def confirm(self) -> None:
        pass

    @transition(field=status, source=Status.CONFIRMED, target=Status.COMPLETED)
    def complete(self) -> None:
        pass

    @transition(field=status, source=Status.DRAFT, target=Status.CANCELLED)
    def cancel(self) -> None:
        pass


class PlanItem(models.Model):
    """A course level in a plan with its seats: the cart line it came from. People fill the
    seats through ItemAssignment; an item never has more people than seats."""

    plan = models.ForeignKey(TrainingPlan, on_delete=models.CASCADE, related_name="items")
    level = models.ForeignKey("catalog.Level", on_delete=models.PROTECT, related_name="+")
    seats = models.PositiveIntegerField(default=1, help_text="Seats planned in the cart.")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["plan", "level"], name="plan_item_once")]

    def __str__(self) -> str:
        return str(self.level)


class Participant(models.Model):
    """A member of the organization, or an email address invited to join it."""

    plan = models.ForeignKey(TrainingPlan, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    email = models.EmailField()
    invite_token = models.UUIDField(default=uuid.uuid4, unique=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(fields=["plan", "email"], name="participant_once")]

    def __str__(self) -> str:
        return self.email


class ItemAssignment(models.Model):
    """One participant in one seat of a plan item. Confirm users charges (or holds) exactly
    the assignments not confirmed yet, so what the plan page shows is what it takes."""

    item = models.ForeignKey(PlanItem, on_delete=models.CASCADE, related_name="assignments")
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="assignments"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item_id", "participant_id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "participant"], name="item_assignment_once")
        ]
        indexes = [
            models.Index(
                fields=["item"],
                condition=models.Q(confirmed_at__isnull=True),
                name="item_assignment_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.participant} in {self.item}"


class Enrollment(models.Model):
    """One participant in one plan item: what was paid (or held) and how far they are."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned", "Assigned"
        STARTED = "started", "Started"
        COMPLETED = "completed", "Completed"
        REMOVED = "removed", "Removed"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="enrollments"
    )
    level = models.ForeignKey("catalog.Level", on_delete=models.PROTECT, related_name="+")
    cost = models.PositiveIntegerField()
    status = FSMField(default=Status.ASSIGNED, choices=Status.choices)
    progress = models.PositiveSmallIntegerField(default=0)
    # Policy `confirm`: the redemption that paid it. Policy `start`: the hold until started.
    redemption = models.ForeignKey(
        "credits.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    hold = models.OneToOneField(
        "credits.Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="enrollment_progress_max"
            ),
        ]
        indexes = [
            # Reminders and the "not started for two weeks" list: seats not started yet, by
            # when they were given.
            models.Index(
                fields=["created_at"],
                condition=models.Q(status="assigned"),
                name="enrollment_not_started",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} in {self.level}"

    @transition(field=status, source=Status.ASSIGNED, target=Status.STARTED)
    def start(self) -> None:
        pass

    @transition(field=status, source=Status.STARTED, target=Status.COMPLETED)
    def finish(self) -> None:
        pass

    @transition(field=status, source=Status.ASSIGNED, target=Status.REMOVED)
    def remove(self) -> None:
        pass


class LevelChange(models.Model):
    """Support moved an enrollment to another level of its course, and what that did to the
    credits. Its id keys the ledger transactions it caused (`level-change:<id>:...`), so no
    two changes share a key, however often an enrollment goes back and forth."""

    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.PROTECT, related_name="level_changes"
    )
    from_level = models.ForeignKey("catalog.Level", on_delete=models.PROTECT, related_name="+")
    to_level = models.ForeignKey("catalog.Level", on_delete=models.PROTECT, related_name="+")
    from_cost = models.PositiveIntegerField()
    to_cost = models.PositiveIntegerField()
    # Signed: + charged from the pool, - given back to it. Zero while the credits are only
    # held (the hold is replaced instead).
    credits_moved = models.IntegerField(default=0)
    # Part of a cheaper level's difference that did not come back: its lots expired or were
    # revoked since, or it had been billed as overage.
    credits_not_returned = models.PositiveIntegerField(default=0)
    reason = models.TextField()
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # What it did in the ledger; all empty when the levels cost the same.
    charge = models.ForeignKey(
        "credits.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The redemption of the difference (a dearer level, credits already charged).",
    )
    released = models.ForeignKey(
        "credits.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The release of the old hold (credits still held).",
    )
    hold = models.ForeignKey(
        "credits.Hold",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The new hold of the new cost (credits still held).",
    )
    # A cheaper level may give back from several earlier charges (newest first).
    reversals = models.ManyToManyField("credits.LedgerTransaction", blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.enrollment}: {self.from_level} → {self.to_level}"

    @property
    def cost_difference(self) -> int:
        return self.to_cost - self.from_cost


class CourseManager(models.Model):
    """A member registered as manager of a course (seed 001): they get a share of the
    course's credits and invite learners with it."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    course = models.ForeignKey("catalog.Course", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["course__title", "user__email"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "course", "user"], name="course_manager_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} manages {self.course}"


class Assignment(models.Model):
    """A learner's seat in a course outside a plan: a manager's invitation (credits held
    until accepted) or an admin's manual enrollment (redeemed at once)."""

    class Status(models.TextChoices):
        INVITED = "invited", "Invited"
        ACCEPTED = "accepted", "Accepted"
        STARTED = "started", "Started"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )
    level = models.ForeignKey("catalog.Level", on_delete=models.PROTECT, related_name="+")
    # The level's course, copied onto the row so that the database itself can refuse a
    # second pending invitation of one address to one course (constraint below).
    course = models.ForeignKey("catalog.Course", on_delete=models.PROTECT, related_name="+")
    email = models.EmailField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A re-invite issues a new token: the old link dies.
    token = models.UUIDField(default=uuid.uuid4, unique=True)
    # The links re-invites killed, so that opening one can say "replaced by a newer email"
    # instead of "unknown link".
    replaced_tokens = ArrayField(models.UUIDField(), default=list, blank=True)
    status = FSMField(default=Status.INVITED, choices=Status.choices)
    progress = models.PositiveSmallIntegerField(default=0)
    hold = models.OneToOneField(
        "credits.Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    redemption = models.ForeignKey(
        "credits.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One pending invitation per address and course: inviting again re-sends it
            # (training.invitations.services.invite), so one person never ties up two holds.
            models.UniqueConstraint(
                fields=["organization", "course", "email"],
                condition=models.Q(status="invited"),
                name="assignment_pending_once",
            )
        ]
        indexes = [
            GinIndex(fields=["replaced_tokens"], name="assignment_replaced_tokens"),
            # A manager's course page lists their invitations newest first, a page at a time.
            models.Index(
                fields=["organization", "manager", "course", "-created_at", "-id"],
                name="assignment_manager_newest",
            ),
            # Reminders: invitations still pending, by when they were sent.
            models.Index(
                fields=["created_at"],
                condition=models.Q(status="invited"),
                name="assignment_pending_since",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} in {self.level} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        # The services set the course themselves; this covers any other creator (shell,
        # fixtures), which would otherwise fail on the NOT NULL column.
        if self.course_id is None and self.level_id is not None:
            self.course_id = self.level.course_id
        super().save(*args, **kwargs)

    @transition(field=status, source=Status.INVITED, target=Status.ACCEPTED)
    def accept(self) -> None:
        pass

    @transition(field=status, source=Status.INVITED, target=Status.CANCELLED)
    def cancel(self) -> None:
        pass

    @transition(field=status, source=Status.INVITED, target=Status.EXPIRED)
    def expire(self) -> None:
        pass

    @transition(field=status, source=Status.ACCEPTED, target=Status.STARTED)
    def start(self) -> None:
        pass

    @transition(field=status, source=Status.STARTED, target=Status.COMPLETED)
    def finish(self) -> None:
        pass


class CreditRequest(models.Model):
    """A manager asking the admins for more credits for one course they manage. Answered
    once: approved (the credits moved to the manager, `transfer` the last move) or declined
    with a note. The answer is written under the row's lock, so two admins (or two tabs)
    answering at once give one answer and one transfer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for an answer"
        APPROVED = "approved", "Approved"
        DECLINED = "declined", "Declined"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )
    manager = models.ForeignKey(CourseManager, on_delete=models.PROTECT, related_name="requests")
    quantity = models.PositiveIntegerField()
    note = models.CharField(max_length=1000, blank=True)
    # The form's token: a double-submitted request is one request.
    token = models.UUIDField(unique=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    answer_note = models.CharField(max_length=1000, blank=True)
    transfer = models.ForeignKey(
        "credits.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1, quantity__lte=100_000),
                name="credit_request_quantity",
            ),
            # One open request per manager and course: asking again while one waits is
            # refused with the pending one's figures, not a second row for the admins.
            models.UniqueConstraint(
                fields=["manager"],
                condition=models.Q(status="pending"),
                name="credit_request_one_pending",
            ),
            models.CheckConstraint(
                condition=models.Q(status="pending", answered_at__isnull=True)
                | (~models.Q(status="pending") & models.Q(answered_at__isnull=False)),
                name="credit_request_answered_at",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="approved") | models.Q(transfer__isnull=False),
                name="credit_request_approved_moved",
            ),
        ]
        indexes = [
            # The admins' dashboard: an organization's pending requests, oldest first.
            models.Index(
                fields=["organization", "created_at"],
                condition=models.Q(status="pending"),
                name="credit_request_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.quantity} credits for {self.manager} ({self.status})"
