"""The credit ledger's tables. Only `credits/services.py` writes them.

- Lot: one purchase, subscription period or grant, with its own expiry.
- Account: where credits live (the pool, a course earmark, a manager's share of a course).
- Holding: how much of one lot one account holds; an account's balance is the sum of its
  holdings, so moving credits between accounts keeps each lot's expiry.
- Hold: credits reserved on an account ("assigned") without being deducted.
- LedgerTransaction / LedgerEntry: the append-only history. Every change to a holding is one
  entry; PostgreSQL triggers refuse UPDATE and DELETE on both tables.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Lot(models.Model):
    class Source(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        SUBSCRIPTION = "subscription", "Subscription"
        GRANT = "grant", "Grant"
        ADJUSTMENT = "adjustment", "Adjustment"
        # Support's goodwill credits: given, not sold (no cost).
        GOODWILL = "goodwill", "Goodwill"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="lots"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    quantity = models.PositiveIntegerField()
    invoiced_at = models.DateTimeField(help_text="Invoice date: validity counts from here.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Blank: never expires.")
    reference = models.CharField(max_length=255, blank=True, help_text="e.g. Stripe invoice id.")
    expired_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["organization", "expires_at", "invoiced_at", "id"]
        # Support's tools (credits/support.py): extending lots and granting goodwill credits.
        permissions = [("use_support_tools", "Can extend lots and grant goodwill credits")]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="lot_quantity_positive"),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("invoiced_at")),
                name="lot_expires_after_invoice",
            ),
            models.UniqueConstraint(
                fields=["reference"], condition=~Q(reference=""), name="lot_reference_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=Q(expired_at__isnull=True), name="lot_expiry_due"
            ),
            # The Credits page's lists, a page at a time: the current lots in the consumption
            # order, the past ones in its reverse (this index read backwards). Without them a
            # page of lots read and sorted every lot the organization ever bought. Both in
            # ascending order: each lot the expiry marks joins the past index at its right
            # edge, as lots expire in order. A descending index took every one of them at its
            # left edge and made a million expiries three times slower (bench expire_lots).
            models.Index(
                fields=["organization", "expires_at", "invoiced_at", "id"],
                condition=Q(expired_at__isnull=True, revoked_at__isnull=True),
                name="lot_current_in_order",
            ),
            models.Index(
                fields=["organization", "expires_at", "invoiced_at", "id"],
                condition=~Q(expired_at__isnull=True, revoked_at__isnull=True),
                name="lot_past_in_order",
            ),
        ]

    def __str__(self) -> str:
        return f"Lot {self.pk}: {self.quantity} ({self.get_source_display()})"


class Account(models.Model):
    class Kind(models.TextChoices):
        POOL = "pool", "Universal pool"
        COURSE = "course", "Course"
        MANAGER = "manager", "Manager"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="credit_accounts"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    course = models.ForeignKey(
        "catalog.Course", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Cached figures, kept by services in the same database transaction as the entries and
    # holds they summarise; `credits_audit` proves they match.
    balance = models.PositiveIntegerField(default=0)
    held = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["organization", "kind", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_nonneg"),
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_nonneg"),
            models.CheckConstraint(
                condition=(
                    Q(kind="pool", course__isnull=True, manager__isnull=True)
                    | Q(kind="course", course__isnull=False, manager__isnull=True)
                    | Q(kind="manager", course__isnull=False, manager__isnull=False)
                ),
                name="account_kind_shape",
            ),
            models.UniqueConstraint(
                fields=["organization"], condition=Q(kind="pool"), name="account_one_pool"
            ),
            models.UniqueConstraint(
                fields=["organization", "course"],
                condition=Q(kind="course"),
                name="account_one_per_course",
            ),
            models.UniqueConstraint(
                fields=["organization", "course", "manager"],
                condition=Q(kind="manager"),
                name="account_one_per_manager_course",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.POOL:
            return "Universal pool"
        if self.kind == self.Kind.COURSE:
            return f"Course: {self.course}"
        return f"Manager {self.manager} on {self.course}"


class Holding(models.Model):
    # Indexed by holding_unique, whose first column it is.
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="holdings", db_index=False
    )
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="holdings")
    quantity = models.PositiveIntegerField(default=0)
    # Whether anything is left, kept by PostgreSQL itself. Emptied holdings stay (history
    # refers to them) and outnumber live ones in an old organization; the partial index on
    # this column lets consumption read the live ones only. Not an index on `quantity > 0`:
    # `quantity` changes with every redemption and would then be an indexed column, which
    # rules out HOT updates; `live` changes only when a holding empties or fills again.
    live = models.GeneratedField(
        expression=models.ExpressionWrapper(Q(quantity__gt=0), output_field=models.BooleanField()),
        output_field=models.BooleanField(),
        db_persist=True,
    )

    # The lot's consumption order, copied onto the holding by PostgreSQL (a trigger, kept in
    # step if the lot's dates change) so that one index holds an account's live holdings in
    # the order credits_take uses them: it reads from the start and stops once covered.
    lot_expires_at = models.DateTimeField(null=True, editable=False)
    lot_invoiced_at = models.DateTimeField(null=True, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=0), name="holding_nonneg"),
            models.UniqueConstraint(fields=["account", "lot"], name="holding_unique"),
        ]
        indexes = [
            # ASC puts never-expiring lots (NULL) last, as the consumption order does.
            models.Index(
                fields=["account", "lot_expires_at", "lot_invoiced_at", "lot"],
                condition=Q(live=True),
                name="holding_live_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of lot {self.lot_id} in account {self.account_id}"


class LedgerTransaction(models.Model):
    """One atomic change, with the idempotency key it was asked with. Append-only."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Credits added"
        REDEEM = "redeem", "Redeemed"
        HOLD = "hold", "Assigned (held)"
        CAPTURE = "capture", "Assignment started (deducted)"
        RELEASE = "release", "Assignment released"
        TRANSFER = "transfer", "Allocated"
        EXPIRE = "expire", "Expired"
        REVOKE = "revoke", "Revoked"
        ADJUST = "adjust", "Support adjustment"
        REVERSE = "reverse", "Reversed"
        # Gives back what one revocation took (a Stripe dispute won): see lot_restore.
        RESTORE = "restore", "Restored"
        # Support's tools: credits given as a gesture (a lot of their own, at no cost), and a
        # lot's expiry moved later (no entries: the credits stay where they are).
        GOODWILL = "goodwill", "Goodwill credits"
        EXTEND = "extend", "Expiry extended"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="ledger_transactions"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    idempotency_key = models.CharField(max_length=255)
    # A digest of the parameters: the same key with other parameters is refused.
    fingerprint = models.CharField(max_length=64)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    quantity = models.PositiveIntegerField(default=0, help_text="What was asked for.")
    reference = models.CharField(max_length=255, blank=True)
    memo = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    # A reversal names the redemption or capture it gives credits back from, so that what is
    # still reversible is the original less every reversal pointing at it.
    reversal_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversals"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"], name="ledger_txn_idempotency"
            ),
            models.CheckConstraint(
                condition=Q(kind="reverse", reversal_of__isnull=False)
                | (~Q(kind="reverse") & Q(reversal_of__isnull=True)),
                name="ledger_txn_reversal_of_reverse",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "created_at"], name="ledger_txn_org_time"),
            # The history filtered by kind: a rare kind would otherwise walk all history.
            models.Index(
                fields=["organization", "kind", "created_at"], name="ledger_txn_org_kind_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class LedgerEntry(models.Model):
    """A signed change of one lot's quantity in one account. Append-only."""

    # No per-row foreign keys: an expiry writes an entry per holding, and PostgreSQL checks a
    # foreign key row by row (a million checks of the same transaction and account). A
    # statement trigger (migration 0007) checks each insert's references set-based instead,
    # and the rows referred to are never deleted (triggers refuse it).
    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries", db_constraint=False
    )
    # Indexed by ledger_entry_acct_time, whose first column it is.
    account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="entries",
        db_constraint=False,
        db_index=False,
    )
    lot = models.ForeignKey(
        Lot, on_delete=models.PROTECT, related_name="entries", db_constraint=False
    )
    quantity = models.IntegerField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(quantity=0), name="entry_nonzero"),
        ]
        indexes = [models.Index(fields=["account", "created_at"], name="ledger_entry_acct_time")]

    def __str__(self) -> str:
        return f"{self.quantity:+} lot {self.lot_id} account {self.account_id}"


class Hold(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    reference = models.CharField(max_length=255, blank=True)
    allow_overage = models.BooleanField(default=False)
    # One transaction may place many holds (a training plan confirmed for many people).
    placed_by = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="placed_holds"
    )
    resolved_by = models.OneToOneField(
        LedgerTransaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="resolved_hold",
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="hold_quantity_positive"),
            models.CheckConstraint(
                condition=Q(status="active", resolved_by__isnull=True)
                | (~Q(status="active") & Q(resolved_by__isnull=False)),
                name="hold_resolved_once",
            ),
        ]
        indexes = [
            models.Index(fields=["account"], condition=Q(status="active"), name="hold_active"),
        ]

    def __str__(self) -> str:
        return f"Hold {self.pk}: {self.quantity} ({self.status})"


class Overage(models.Model):
    """Credits used beyond the balance under the `bill_overage` policy, billed monthly."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="overages"
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, related_name="overage"
    )
    quantity = models.PositiveIntegerField()
    billed_at = models.DateTimeField(null=True, blank=True)
    invoice_reference = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="overage_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"Overage {self.quantity} ({'billed' if self.billed_at else 'unbilled'})"


class OverageDue(models.Model):
    """One row per organization that has unbilled overage: the hourly overage job reads this
    small table instead of the overage rows or every organization.

    A trigger on `credits_overage` (migration 0010) inserts the row, or moves `since` back,
    in the transaction that records the overage, so no writer can forget it; the billing
    job moves `since` forward to the oldest overage still unbilled, or deletes the row, after
    each run (`billing.overage`)."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    since = models.DateTimeField(help_text="No unbilled overage of this organization is older.")

    def __str__(self) -> str:
        return f"Overage due since {self.since:%Y-%m-%d %H:%M}"


class Alert(models.Model):
    """What alerts an organization was sent, so each goes out once per occurrence: a
    crossing (`active` until it recovers) or a dated reminder (one row per lot and day)."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="credit_alerts"
    )
    key = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="alert_once"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({'active' if self.active else 'resolved'})"


class DailyTotal(models.Model):
    """What one account's entries of one kind added up to on one UTC day: the read model that
    "balance on a date", the Billing chart, the forecast and the "used" figures read instead
    of the entries. PostgreSQL writes it (credits/sql/daily_totals.sql), in the statement that
    inserts the entries, so no writer can forget it; `credits_audit` proves it.

    Gains and losses apart: an adjustment may go either way, and the charts count them on
    different sides. Days in UTC so that any instant splits exactly: the entries of the day it
    falls in are read from the ledger itself (one day's worth, by index)."""

    # Indexed by daily_total_org_day, whose first column it is.
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    day = models.DateField()
    kind = models.CharField(max_length=8, choices=LedgerTransaction.Kind.choices)
    gained = models.BigIntegerField(default=0)
    lost = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day", "kind"], name="daily_total_once"),
            models.CheckConstraint(
                condition=Q(gained__gte=0, lost__lte=0), name="daily_total_signs"
            ),
        ]
        indexes = [models.Index(fields=["organization", "day"], name="daily_total_org_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} account {self.account_id}: +{self.gained} {self.lost}"


class StoredForecast(models.Model):
    """The dashboard's forecast of one organization, computed by beat (credits.forecast) so
    that the page reads one row however long the organization's history is."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    computed_at = models.DateTimeField()
    enough_history = models.BooleanField(default=False)
    daily_rate = models.FloatField(default=0)
    runs_out_on = models.DateField(null=True, blank=True)
    expires_unused = models.BigIntegerField(default=0)
    # [[ISO date, balance], ...] every 7 days, for the chart.
    points = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"Forecast of {self.organization_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class AuditRun(models.Model):
    """One run of the ledger audit. A nightly run proves the entries written since the last
    good run's checkpoint (with an overlap, see credits.audit); a weekly one proves all."""

    class Scope(models.TextChoices):
        RECENT = "recent", "Since the last checkpoint"
        FULL = "full", "All history"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Entries with from_entry_id < id <= to_entry_id were proved (from 0 for a full run).
    from_entry_id = models.BigIntegerField(default=0)
    to_entry_id = models.BigIntegerField(default=0)
    problems = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Audit {self.scope} at {self.started_at:%Y-%m-%d %H:%M}"
