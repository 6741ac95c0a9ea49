"""Support sees the ledger read-only: every change goes through credits/services.py, so
nothing here can add, edit or delete a row. Adjustments have their own audited form.

Every list is over a table that grows with history, so each is a LargeTableAdmin: newest
first by id, a count that stops at a cap, related rows joined, no filter that reads a table.
"""

from django.contrib import admin

from config.admin import LargeTableAdmin, ReadOnlyAdmin, organization_filter

from .models import (
    Account,
    Alert,
    AuditRun,
    DailyTotal,
    Hold,
    Holding,
    LedgerEntry,
    LedgerTransaction,
    Lot,
    Overage,
    OverageDue,
    StoredForecast,
)
from .support import SupportToolsAdmin, extend_expiry


class LedgerAdmin(LargeTableAdmin, ReadOnlyAdmin):
    pass


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "lot", "quantity", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Lot)
class LotAdmin(SupportToolsAdmin, LedgerAdmin):
    list_display = ["id", "organization", "source", "quantity", "invoiced_at", "expires_at"]
    list_filter = [organization_filter(), "source", "expired_at", "revoked_at"]
    search_fields = ["organization__name", "reference"]
    list_select_related = ["organization"]
    # Support's one write here, through credits/services.py: a later expiry, with a reason.
    actions = [extend_expiry]


@admin.register(Account)
class AccountAdmin(LedgerAdmin):
    list_display = ["id", "organization", "kind", "course", "manager", "balance", "held"]
    list_filter = [organization_filter(), "kind"]
    search_fields = ["organization__name", "course__title", "manager__email"]
    list_select_related = ["organization", "course", "manager"]


@admin.register(Holding)
class HoldingAdmin(LedgerAdmin):
    list_display = ["id", "account", "lot", "quantity"]
    list_filter = [organization_filter("account__organization")]
    search_fields = ["account__organization__name"]
    list_select_related = ["account__course", "account__manager", "lot"]


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(LedgerAdmin):
    list_display = ["id", "organization", "kind", "quantity", "reference", "actor", "created_at"]
    list_filter = [organization_filter(), "kind"]
    search_fields = ["organization__name", "reference", "idempotency_key", "memo"]
    list_select_related = ["organization", "actor"]
    inlines = [LedgerEntryInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(LedgerAdmin):
    list_display = ["id", "transaction", "account", "lot", "quantity", "created_at"]
    list_filter = [organization_filter("account__organization")]
    search_fields = ["account__organization__name"]
    list_select_related = ["transaction", "account__course", "account__manager", "lot"]


@admin.register(Hold)
class HoldAdmin(LedgerAdmin):
    list_display = ["id", "account", "quantity", "status", "reference", "created_at"]
    list_filter = [organization_filter("account__organization"), "status"]
    search_fields = ["account__organization__name", "reference"]
    list_select_related = ["account__course", "account__manager"]


@admin.register(Overage)
class OverageAdmin(LedgerAdmin):
    list_display = ["id", "organization", "quantity", "billed_at", "invoice_reference"]
    list_filter = [organization_filter(), "billed_at"]
    search_fields = ["organization__name", "invoice_reference"]
    list_select_related = ["organization"]


@admin.register(OverageDue)
class OverageDueAdmin(LedgerAdmin):
    """Which organizations the hourly overage job looks at (kept by a trigger)."""

    list_display = ["organization", "since"]
    search_fields = ["organization__name"]
    list_select_related = ["organization"]
    ordering = ["-organization_id"]  # its primary key


@admin.register(Alert)
class AlertAdmin(LedgerAdmin):
    list_display = ["id", "organization", "key", "active", "sent_at"]
    list_filter = [organization_filter(), "active"]
    search_fields = ["organization__name", "key"]
    list_select_related = ["organization"]


# Read models the database and beat keep (credits/sql/daily_totals.sql, credits.forecast,
# credits.audit): support looks, nothing here writes them.


@admin.register(DailyTotal)
class DailyTotalAdmin(LedgerAdmin):
    list_display = ["id", "organization", "account", "day", "kind", "gained", "lost"]
    list_filter = [organization_filter(), "kind"]
    list_select_related = ["organization", "account__course", "account__manager"]


@admin.register(StoredForecast)
class StoredForecastAdmin(LedgerAdmin):
    list_display = ["organization", "computed_at", "daily_rate", "runs_out_on"]
    search_fields = ["organization__name"]
    list_select_related = ["organization"]
    ordering = ["-organization_id"]  # its primary key


@admin.register(AuditRun)
class AuditRunAdmin(LedgerAdmin):
    list_display = ["id", "scope", "started_at", "finished_at", "problems"]
    list_filter = ["scope"]
