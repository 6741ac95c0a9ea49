from django.conf import settings
from django.db import models
from django_fsm import FSMField, transition


class PriceList(models.Model):
    """What a credit costs in one currency: the list (retail) price and its volume tiers."""

    currency = models.CharField(max_length=3, unique=True)
    list_price_minor = models.PositiveBigIntegerField(
        help_text="Retail price of one credit, in minor units (cents)."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="pricelist_currency_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.currency} price list"


class VolumeTier(models.Model):
    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="tiers")
    min_quantity = models.PositiveIntegerField()
    unit_price_minor = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["price_list", "min_quantity"]
        constraints = [
            models.UniqueConstraint(fields=["price_list", "min_quantity"], name="tier_unique"),
            models.CheckConstraint(condition=models.Q(min_quantity__gte=1), name="tier_min_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.min_quantity}+ at {self.unit_price_minor} {self.price_list.currency}"


class CreditPackage(models.Model):
    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="packages")
    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    price_minor = models.PositiveBigIntegerField()
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["price_list", "credits"]
        constraints = [
            models.UniqueConstraint(fields=["price_list", "credits"], name="package_unique"),
            models.CheckConstraint(condition=models.Q(credits__gte=1), name="package_credits_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"


class StripeCustomer(models.Model):
    """One Stripe customer per organization."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.PROTECT, related_name="stripe_customer"
    )
    customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.customer_id


class Purchase(models.Model):
    """One Add-credits payment. Credits arrive only when Stripe says it is paid."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for payment"
        PAID = "paid", "Paid"
        FAILED = "failed", "Payment failed"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="purchases"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # The form's one-time token: a double click or a resubmission finds this purchase again.
    request_token = models.UUIDField()
    quantity = models.PositiveIntegerField()
    # Money is 64-bit: a 32-bit column tops out at $21,474,836.47, below what a price list
    # times a quantity can reach before Stripe's own per-charge limit is even checked.
    amount_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3)
    package = models.ForeignKey(
        CreditPackage, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status = FSMField(default=Status.PENDING, choices=Status.choices)
    checkout_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    checkout_url = models.URLField(max_length=2000, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    invoice_id = models.CharField(max_length=255, blank=True)
    invoice_url = models.URLField(max_length=2000, blank=True, help_text="Stripe-hosted invoice.")
    next_url = models.CharField(max_length=500, blank=True)
    lot = models.OneToOneField(
        "credits.Lot", on_delete=models.PROTECT, null=True, blank=True, related_name="purchase"
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "request_token"], name="purchase_request_once"
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="purchase_qty_pos"),
        ]

    def __str__(self) -> str:
        return f"Purchase {self.pk}: {self.quantity} credits ({self.status})"

    @transition(field=status, source=Status.PENDING, target=Status.PAID)
    def mark_paid(self) -> None:
        pass

    @transition(field=status, source=Status.PENDING, target=Status.FAILED)
    def mark_failed(self) -> None:
        pass


class StripeEvent(models.Model):
    """Every webhook event, stored once by its Stripe id: a redelivery is recognised."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class SubscriptionPlan(models.Model):
    """A plan that grants credits each paid period (seed 001). Support sets the Stripe price
    id in the admin; `rank` orders tiers for upgrades."""

    class Interval(models.TextChoices):
        MONTH = "month", "Monthly"
        YEAR = "year", "Yearly"

    name = models.CharField(max_length=100)
    interval = models.CharField(max_length=5, choices=Interval.choices)
    credits_per_period = models.PositiveIntegerField()
    price_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    rank = models.PositiveSmallIntegerField(help_text="Higher is a bigger tier.")
    stripe_price_id = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["interval", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["interval", "rank", "currency"], name="plan_rank"),
            models.CheckConstraint(
                condition=models.Q(credits_per_period__gte=1), name="plan_credits_pos"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_interval_display().lower()})"


class Subscription(models.Model):
    """An organization's Stripe subscription, kept in step by Stripe's events."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="subscriptions"
    )
    plan = models.ForeignKey(SubscriptionPlan, on_delete=models.PROTECT, related_name="+")
    stripe_subscription_id = models.CharField(max_length=255, unique=True)
    stripe_item_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=32, default="incomplete")
    cancel_at_period_end = models.BooleanField(default=False)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    LIVE_STATUSES = ("active", "trialing", "past_due")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.organization} on {self.plan} ({self.status})"

    @property
    def live(self) -> bool:
        return self.status in self.LIVE_STATUSES
