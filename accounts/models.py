import zoneinfo

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone.")


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str):
        # Email addresses are matched without regard to case.
        return self.get(email__iexact=username)


class User(AbstractUser):
    """Logs in with an email address. Support staff are `is_staff` users (Django admin)."""

    username = None
    email = models.EmailField("email address", unique=True)
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="Blank: the organization's time zone.",
    )

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.get_full_name() or self.email


class Organization(models.Model):
    class RedemptionPoint(models.TextChoices):
        CONFIRM = "confirm", "When the admin clicks Confirm users"
        START = "start", "When the learner starts (held until then)"

    class WhenShort(models.TextChoices):
        BUY = "buy", "Block and offer to buy the shortfall"
        BILL_OVERAGE = "bill_overage", "Allow and bill the overage monthly"

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code.")
    redemption_point = models.CharField(
        max_length=16, choices=RedemptionPoint.choices, default=RedemptionPoint.CONFIRM
    )
    when_short = models.CharField(max_length=16, choices=WhenShort.choices, default=WhenShort.BUY)
    lot_validity_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=365,
        help_text="Days a purchased lot stays valid from its invoice date. Blank: never expires.",
    )
    low_balance_threshold = models.PositiveIntegerField(
        default=10, help_text="Admins are alerted when available credits fall below this."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="org_currency_iso"
            ),
            models.CheckConstraint(
                condition=models.Q(lot_validity_days__isnull=True)
                | models.Q(lot_validity_days__gt=0),
                name="org_lot_validity_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MANAGER = "manager", "Manager"
        LEARNER = "learner", "Learner"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization__name", "user__email"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.organization} ({self.get_role_display()})"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN

    @property
    def is_manager(self) -> bool:
        return self.role == self.Role.MANAGER
