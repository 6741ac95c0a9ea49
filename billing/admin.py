from django.contrib import admin, messages

from config.admin import (
    LargeTableAdmin,
    ReadOnlyAdmin,
    organization_filter,
    recent_values_filter,
)

from . import webhooks
from .models import (
    AutoTopUp,
    CreditPackage,
    Dispute,
    OverageInvoice,
    Payment,
    PriceList,
    Purchase,
    StripeCustomer,
    StripeEvent,
    Subscription,
    SubscriptionInvoice,
    SubscriptionPlan,
    VolumeTier,
)


class VolumeTierInline(admin.TabularInline):
    model = VolumeTier
    extra = 0


class CreditPackageInline(admin.TabularInline):
    model = CreditPackage
    extra = 0


@admin.register(PriceList)
class PriceListAdmin(admin.ModelAdmin):
    list_display = ["currency", "list_price_minor"]
    inlines = [VolumeTierInline, CreditPackageInline]


@admin.register(CreditPackage)
class CreditPackageAdmin(admin.ModelAdmin):
    list_display = ["name", "credits", "price_minor", "price_list", "active"]
    list_filter = ["active", "price_list"]
    search_fields = ["name"]
    list_select_related = ["price_list"]


@admin.register(VolumeTier)
class VolumeTierAdmin(admin.ModelAdmin):
    list_display = ["price_list", "min_quantity", "unit_price_minor"]
    list_filter = ["price_list"]
    search_fields = ["price_list__currency"]
    list_select_related = ["price_list"]


# Price lists, packages, tiers and subscription plans are the platform's own short
# catalogue. Everything below them grows with the organizations' history: LargeTableAdmin
# (config/admin.py says what that keeps), and filters on plain columns offer the values of
# recent rows instead of a DISTINCT over the table.


@admin.register(StripeCustomer)
class StripeCustomerAdmin(LargeTableAdmin):
    list_display = ["organization", "customer_id", "created_at"]
    search_fields = ["organization__name", "customer_id"]
    readonly_fields = ["organization", "customer_id", "created_at"]
    list_select_related = ["organization"]


@admin.register(Purchase)
class PurchaseAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Read-only: purchases change only through Stripe's events. No refund button: all sales
    are final (seed 000)."""

    list_display = [
        "id", "organization", "quantity", "amount_minor", "currency", "status", "automatic",
    ]  # fmt: skip
    list_filter = [
        "status", "automatic", recent_values_filter("currency"), organization_filter(),
    ]  # fmt: skip
    search_fields = ["organization__name", "checkout_session_id", "payment_intent_id"]
    list_select_related = ["organization"]


@admin.register(AutoTopUp)
class AutoTopUpAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Set, paused and resumed by the organization's admins (Billing page) and Stripe's
    events; support looks."""

    list_display = ["organization", "status", "threshold", "quantity", "monthly_cap", "updated_at"]
    list_filter = ["status", organization_filter()]
    search_fields = ["organization__name", "paused_reason"]
    list_select_related = ["organization"]


@admin.register(SubscriptionInvoice)
class SubscriptionInvoiceAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["invoice_id", "subscription", "billing_reason", "status", "lot", "paid_at"]
    list_filter = [recent_values_filter("billing_reason"), "status"]
    search_fields = ["invoice_id", "payment_reference", "subscription__stripe_subscription_id"]
    list_select_related = ["subscription__organization", "subscription__plan", "lot"]


@admin.register(Payment)
class PaymentAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Refunds of a payment as Stripe reported them, parked until the payment is known."""

    list_display = ["reference", "charge_id", "amount_minor", "refunded_minor", "refund_credits"]
    search_fields = ["reference", "charge_id"]


@admin.register(Dispute)
class DisputeAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["dispute_id", "payment", "amount_minor", "currency", "status", "revocation"]
    list_filter = [recent_values_filter("status")]
    search_fields = ["dispute_id", "payment__reference"]
    list_select_related = ["payment", "revocation"]


@admin.register(OverageInvoice)
class OverageInvoiceAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Monthly overage invoices; `Payment failed` ones are shown to the admins too."""

    list_display = [
        "organization",
        "month",
        "quantity",
        "amount_minor",
        "status",
        "attempt_count",
        "failed_at",
        "stripe_invoice_id",
    ]
    list_filter = ["status", recent_values_filter("month"), organization_filter()]
    search_fields = ["organization__name", "stripe_invoice_id", "month"]
    list_select_related = ["organization"]


@admin.register(StripeEvent)
class StripeEventAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Every Stripe event as it arrived, what became of it, and the error of one that could
    not be applied. Support fixes the cause (a plan's price id, a missing organization...),
    then runs "Process again"."""

    list_display = ["event_id", "type", "status", "attempts", "created", "processed_at"]
    list_filter = ["status", recent_values_filter("type")]
    search_fields = ["event_id", "type", "last_error"]
    readonly_fields = [
        "event_id",
        "type",
        "status",
        "attempts",
        "last_error",
        "created",
        "received_at",
        "processed_at",
        "payload",
    ]
    actions = ["process_again"]

    def get_queryset(self, request):
        # A list of events needs none of their payloads (kilobytes each); the change page
        # reads it when it shows it.
        return super().get_queryset(request).defer("payload")

    @admin.action(description="Process again")
    def process_again(self, request, queryset):
        done, failed, skipped = 0, [], 0
        for record in queryset.order_by("created", "pk"):
            if record.status == StripeEvent.Status.PROCESSED:
                skipped += 1
                continue
            try:
                webhooks.event_process(event_pk=record.pk)
            except Exception as error:
                failed.append(f"{record.event_id}: {webhooks._describe(error)}")
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} event(s) processed.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} were processed already.", messages.INFO)
        for failure in failed:
            self.message_user(request, f"Still failing: {failure}", messages.ERROR)


@admin.register(SubscriptionPlan)
class SubscriptionPlanAdmin(admin.ModelAdmin):
    list_display = ["name", "interval", "credits_per_period", "price_minor", "rank", "active"]
    list_filter = ["interval", "active"]
    search_fields = ["name", "stripe_price_id"]


@admin.register(Subscription)
class SubscriptionAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Read-only: Stripe's events keep subscriptions in step."""

    list_display = [
        "organization",
        "plan",
        "status",
        "pending_plan",
        "cancel_at_period_end",
        "current_period_end",
    ]
    list_filter = [recent_values_filter("status"), "plan", organization_filter()]
    search_fields = ["organization__name", "stripe_subscription_id"]
    list_select_related = ["organization", "plan", "pending_plan"]
