from django.conf import settings
from django.db import models
from django_fsm import RETURN_VALUE, FSMField, transition


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
        CANCELLED = "cancelled", "Cancelled"
        PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
        REFUNDED = "refunded", "Refunded"
        DISPUTED = "disputed", "Disputed"

    # Paid, and whatever refunds and disputes made of it since (billing/refunds.py).
    SETTLED = (Status.PAID, Status.PARTIALLY_REFUNDED, Status.REFUNDED, Status.DISPUTED)

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
    # An auto top-up (billing/autotopup.py): charged off-session to the saved card, without
    # a checkout; its credits come from the same payment webhooks as any purchase.
    automatic = models.BooleanField(default=False)
    # The saved card an auto top-up charged: a failure pauses auto top-up only if that card
    # is still the one on file.
    charged_card = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "request_token"], name="purchase_request_once"
            ),
            # At most one auto top-up in flight per organization, however many redemptions
            # cross the threshold at the same instant.
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(automatic=True, status="pending"),
                name="purchase_one_topup_in_flight",
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="purchase_qty_pos"),
        ]

    def __str__(self) -> str:
        return f"Purchase {self.pk}: {self.quantity} credits ({self.status})"

    # A session Stripe says is paid took the money, even if it was seen expiring first.
    @transition(field=status, source=[Status.PENDING, Status.CANCELLED], target=Status.PAID)
    def mark_paid(self) -> None:
        pass

    @transition(field=status, source=Status.PENDING, target=Status.FAILED)
    def mark_failed(self) -> None:
        pass

    @transition(field=status, source=Status.PENDING, target=Status.CANCELLED)
    def mark_cancelled(self) -> None:
        pass

    @transition(field=status, source=list(SETTLED), target=RETURN_VALUE(*SETTLED))
    def mark_settled(self, status: str) -> str:
        return status


class StripeEvent(models.Model):
    """Every webhook event, stored once by its Stripe id before it is answered, then
    processed by a task (billing/webhooks.py): a redelivery is recognised, and an event whose
    handler failed stays here with its error until a retry applies it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be processed"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    # Stripe's own time for the event: the order handlers compare, not the arrival order.
    created = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
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
    # Stripe's `created` of the newest state applied (a customer.subscription.* event, or the
    # first paid invoice making it active): an older event arriving late changes nothing.
    state_as_of = models.DateTimeField(null=True, blank=True)
    # An upgrade asked of Stripe and not paid yet (payment_behavior=pending_if_incomplete):
    # the plan stays the old one until the proration invoice is paid.
    pending_plan = models.ForeignKey(
        SubscriptionPlan, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    pending_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    LIVE_STATUSES = ("active", "trialing", "past_due")
    # Stripe never brings a subscription back from these.
    ENDED_STATUSES = ("canceled", "incomplete_expired")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.organization} on {self.plan} ({self.status})"

    @property
    def live(self) -> bool:
        return self.status in self.LIVE_STATUSES


class SettledStatus(models.TextChoices):
    """What refunds and disputes made of a paid invoice (as Purchase.SETTLED)."""

    PAID = "paid", "Paid"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"
    DISPUTED = "disputed", "Disputed"


class SubscriptionInvoice(models.Model):
    """A paid subscription invoice and the lot it granted: a period's credits
    (`subscription_create`, `subscription_cycle`) or an upgrade's difference
    (`subscription_update`). It names its payment, so that a refund or dispute finds the lot.
    The row may be created first by `invoice_payment.paid` (which names the payment) and
    completed by `invoice.paid`, in whichever order they come."""

    invoice_id = models.CharField(max_length=255, unique=True)
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    billing_reason = models.CharField(max_length=40, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    amount_paid_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    # The PaymentIntent (or bare charge) that paid it: Payment.reference.
    payment_reference = models.CharField(max_length=255, blank=True, db_index=True)
    lot = models.OneToOneField(
        "credits.Lot",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="subscription_invoice",
    )
    status = models.CharField(max_length=20, choices=SettledStatus.choices, blank=True)
    note = models.CharField(max_length=255, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invoice {self.invoice_id} ({self.billing_reason or 'not seen paid yet'})"


class Payment(models.Model):
    """One Stripe payment as refunds and disputes see it: how much Stripe says was refunded
    so far and how many credits were revoked for that. Created by whichever comes first, the
    refund or the fulfilment: a refund of a payment not known yet is parked here and applied
    when the payment's lot is (billing/refunds.py). Its row is the lock that puts refunds,
    disputes and the linking of the payment to its lot one after the other."""

    # The PaymentIntent id (pi_...), or the charge id (ch_...) of a charge made without one.
    reference = models.CharField(max_length=255, unique=True)
    charge_id = models.CharField(max_length=255, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    amount_minor = models.BigIntegerField(null=True, blank=True, help_text="The charge's amount.")
    # Cumulative, as Stripe reports it (`amount_refunded`): the largest figure seen wins, so
    # events in any order end in the same place.
    refunded_minor = models.BigIntegerField(default=0)
    # Credits asked back for refunds so far: each new refund revokes only the increment.
    refund_credits = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.reference


class Dispute(models.Model):
    """A Stripe dispute of a payment. Its credits are revoked while it is open or lost and
    given back (lot_restore) if it is won."""

    # Funds stay with the customer's bank in these: the credits are revoked meanwhile. An
    # inquiry (warning_*) takes no money, and the charge can still be refunded during it, so
    # it revokes nothing: a refund then revokes its own share, and nothing is given back
    # twice when the inquiry closes.
    UNRESOLVED = (
        "needs_response",
        "under_review",
        "appeal_needs_response",
        "appeal_under_review",
        "lost",
    )
    # Final states: an event with an older, open status arriving late changes nothing.
    CLOSED = ("won", "lost", "warning_closed", "prevented")

    dispute_id = models.CharField(max_length=255, unique=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32)
    status_as_of = models.DateTimeField(null=True, blank=True)
    revocation = models.OneToOneField(
        "credits.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    restoration = models.OneToOneField(
        "credits.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Dispute {self.dispute_id} ({self.status})"

    @property
    def withholds(self) -> bool:
        return self.status in self.UNRESOLVED


class OverageInvoice(models.Model):
    """One month's overage of an organization on one Stripe invoice. The row (state
    `invoicing`) and the claim on the overage rows commit before Stripe is asked; the
    invoice's id is recorded afterwards, and its payment's fate from Stripe's events."""

    class Status(models.TextChoices):
        INVOICING = "invoicing", "Being invoiced"
        OPEN = "open", "Invoiced"
        PAID = "paid", "Paid"
        PAYMENT_FAILED = "payment_failed", "Payment failed"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="overage_invoices"
    )
    month = models.CharField(max_length=7, help_text="YYYY-MM")
    quantity = models.PositiveIntegerField()
    amount_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.INVOICING, db_index=True
    )
    stripe_invoice_id = models.CharField(max_length=255, blank=True, db_index=True)
    hosted_invoice_url = models.URLField(max_length=2000, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    next_payment_attempt = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    status_as_of = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "month"], name="overage_invoice_once")
        ]

    def __str__(self) -> str:
        return f"Overage {self.month} of {self.organization} ({self.status})"

    @property
    def claim(self) -> str:
        """The overage rows' reference while they are being invoiced; also the stem of the
        Stripe idempotency keys."""
        return f"overage:{self.organization_id}:{self.month}"


class AutoTopUp(models.Model):
    """An organization's "when available credits fall below `threshold`, buy `quantity`",
    with a card saved through Stripe Checkout in setup mode, at most `monthly_cap` credits
    a calendar month (the organization's zone). A declined card, or one that needs the
    customer to authenticate, pauses it until an admin sets a card up again."""

    class Status(models.TextChoices):
        SETTING_UP = "setting_up", "Waiting for the card"
        ACTIVE = "active", "On"
        PAUSED = "paused", "Paused"
        OFF = "off", "Off"

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.PROTECT, related_name="auto_top_up"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SETTING_UP)
    threshold = models.PositiveIntegerField()
    quantity = models.PositiveIntegerField()
    monthly_cap = models.PositiveIntegerField()
    configured_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    setup_session_id = models.CharField(max_length=255, blank=True)
    payment_method_id = models.CharField(max_length=255, blank=True)
    paused_reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1, threshold__gte=1, monthly_cap__gte=1)
                & models.Q(quantity__lte=models.F("monthly_cap")),
                name="auto_top_up_figures",
            ),
        ]

    def __str__(self) -> str:
        return f"Auto top-up of {self.organization}: {self.get_status_display()}"
