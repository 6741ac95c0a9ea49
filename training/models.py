import uuid

from django.conf import settings
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
    """A course level in a plan; every participant is enrolled in every item."""

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
    email = models.EmailField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A re-invite issues a new token: the old link dies.
    token = models.UUIDField(default=uuid.uuid4, unique=True)
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

    def __str__(self) -> str:
        return f"{self.email} in {self.level} ({self.status})"

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
