from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.urls import reverse
from django.utils.html import format_html

from billing.overage import policy_refusal as overage_policy_refusal
from config.admin import LargeTableAdmin, OwnerFixedAdmin, OwnerFixedInlineForm, organization_filter
from credits.support import SupportToolsAdmin, grant_goodwill

from .models import Membership, Organization, User


class MembershipInlineForm(OwnerFixedInlineForm):
    # The parent's own key is fixed by the inline; this fixes the other one on saved rows.
    fixed_after_add = ("user", "organization")


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipInlineForm
    extra = 0
    autocomplete_fields = ["user", "organization"]


@admin.register(User)
class UserAdmin(LargeTableAdmin, BaseUserAdmin):
    # Every member of every organization: a big table. Email is unique, hence indexed.
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "last_login"]
    list_filter = ["is_staff", "is_active", "memberships__role"]
    search_fields = ["email", "first_name", "last_name"]
    readonly_fields = ["last_login", "date_joined"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Person", {"fields": ["first_name", "last_name", "time_zone"]}),
        (
            "Permissions",
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


class OrganizationAdminForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what is shown

    def clean(self):
        cleaned = super().clean()
        # Overage is billed at the list price of the organization's currency: refused here,
        # where the policy and the currency are set, rather than accrued and never billed.
        refusal = overage_policy_refusal(
            when_short=cleaned.get("when_short", self.instance.when_short),
            currency=cleaned.get("currency", self.instance.currency),
        )
        if refusal:
            self.add_error("when_short", refusal)
        return cleaned


@admin.register(Organization)
class OrganizationAdmin(SupportToolsAdmin, admin.ModelAdmin):
    form = OrganizationAdminForm
    list_display = [
        "name", "slug", "currency", "redemption_point", "when_short", "time_zone", "ledger",
    ]  # fmt: skip
    list_filter = ["redemption_point", "when_short", "currency"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]
    actions = [grant_goodwill]

    @admin.display(description="Ledger")
    def ledger(self, organization: Organization):
        """The way into this organization's ledger lists, whose organization filter lists no
        organizations (config.admin.organization_filter)."""
        query = f"?organization={organization.pk}"
        return format_html(
            '<a href="{}">transactions</a> · <a href="{}">lots</a> · <a href="{}">plans</a>',
            reverse("admin:credits_ledgertransaction_changelist") + query,
            reverse("admin:credits_lot_changelist") + query,
            reverse("admin:training_trainingplan_changelist") + query,
        )


@admin.register(Membership)
class MembershipAdmin(LargeTableAdmin, OwnerFixedAdmin):
    """A membership's person and organization are fixed once it exists; its role is not."""

    fixed_after_add = ("user", "organization")
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", organization_filter()]
    search_fields = ["user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]
    list_select_related = ["user", "organization"]
