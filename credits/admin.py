"""Support sees the ledger read-only: every change goes through credits/services.py, so
nothing here can add, edit or delete a row. Adjustments have their own audited form."""

from django.contrib import admin

from config.admin import ReadOnlyAdmin

from .models import (
    Account,
    Alert,
    Hold,
    Holding,
    LedgerEntry,
    LedgerTransaction,
    Lot,
    Overage,
    OverageDue,
)


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "lot", "quantity", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Lot)
class LotAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "source", "quantity", "invoiced_at", "expires_at"]
    list_filter = ["source", "expired_at", "revoked_at"]
    search_fields = ["organization__name", "reference"]
    date_hierarchy = "invoiced_at"
    list_select_related = ["organization"]


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "kind", "course", "manager", "balance", "held"]
    list_filter = ["kind"]
    search_fields = ["organization__name", "course__title", "manager__email"]
    list_select_related = ["organization", "course", "manager"]


@admin.register(Holding)
class HoldingAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "lot", "quantity"]
    search_fields = ["account__organization__name"]
    list_select_related = ["account__course", "account__manager", "lot"]


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "kind", "quantity", "reference", "actor", "created_at"]
    list_filter = ["kind"]
    search_fields = ["organization__name", "reference", "idempotency_key", "memo"]
    date_hierarchy = "created_at"
    list_select_related = ["organization", "actor"]
    inlines = [LedgerEntryInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "transaction", "account", "lot", "quantity", "created_at"]
    search_fields = ["account__organization__name"]
    list_select_related = ["transaction", "account__course", "account__manager", "lot"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "quantity", "status", "reference", "created_at"]
    list_filter = ["status"]
    search_fields = ["account__organization__name", "reference"]
    list_select_related = ["account__course", "account__manager"]


@admin.register(Overage)
class OverageAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "quantity", "billed_at", "invoice_reference"]
    list_filter = ["billed_at"]
    search_fields = ["organization__name", "invoice_reference"]
    list_select_related = ["organization"]


@admin.register(OverageDue)
class OverageDueAdmin(ReadOnlyAdmin):
    """Which organizations the hourly overage job looks at (kept by a trigger)."""

    list_display = ["organization", "since"]
    search_fields = ["organization__name"]
    list_select_related = ["organization"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["organization", "key", "active", "sent_at"]
    list_filter = ["active"]
    search_fields = ["organization__name", "key"]
