from django.contrib import admin

from config.admin import ReadOnlyAdmin

from .models import (
    CreditPackage,
    PriceList,
    Purchase,
    StripeCustomer,
    StripeEvent,
    Subscription,
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


@admin.register(VolumeTier)
class VolumeTierAdmin(admin.ModelAdmin):
    list_display = ["price_list", "min_quantity", "unit_price_minor"]
    list_filter = ["price_list"]
    search_fields = ["price_list__currency"]


@admin.register(StripeCustomer)
class StripeCustomerAdmin(admin.ModelAdmin):
    list_display = ["organization", "customer_id", "created_at"]
    search_fields = ["organization__name", "customer_id"]
    readonly_fields = ["organization", "customer_id", "created_at"]


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    """Read-only: purchases change only through Stripe's events. No refund button: all sales
    are final (seed 000)."""

    list_display = ["id", "organization", "quantity", "amount_minor", "currency", "status"]
    list_filter = ["status", "currency"]
    search_fields = ["organization__name", "checkout_session_id", "payment_intent_id"]
    list_select_related = ["organization"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "received_at", "processed_at"]
    list_filter = ["type"]
    search_fields = ["event_id", "type"]


@admin.register(SubscriptionPlan)
class SubscriptionPlanAdmin(admin.ModelAdmin):
    list_display = ["name", "interval", "credits_per_period", "price_minor", "rank", "active"]
    list_filter = ["interval", "active"]
    search_fields = ["name", "stripe_price_id"]


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Read-only: Stripe's events keep subscriptions in step."""

    list_display = ["organization", "plan", "status", "cancel_at_period_end", "current_period_end"]
    list_filter = ["status", "plan"]
    search_fields = ["organization__name", "stripe_subscription_id"]
    list_select_related = ["organization", "plan"]
