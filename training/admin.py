from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect, render

from catalog.models import Level
from config.admin import LargeTableAdmin, OwnerFixedAdmin, ReadOnlyAdmin, organization_filter
from credits.services import CreditsError

from .models import (
    Assignment,
    CourseManager,
    CreditRequest,
    Enrollment,
    ItemAssignment,
    LevelChange,
    Participant,
    PlanItem,
    TrainingPlan,
)
from .plans import level_changes
from .plans.services import PlanRefused


class PlanItemInline(admin.TabularInline):
    model = PlanItem
    extra = 0
    readonly_fields = ["level", "seats"]


# Plans, their items and people, enrollments and assignments grow with every organization's
# history: each list is a LargeTableAdmin (config/admin.py says what that keeps), its
# organization filter lists no organizations, and its foreign key inputs search instead of
# listing every row.


@admin.register(TrainingPlan)
class TrainingPlanAdmin(LargeTableAdmin, OwnerFixedAdmin):
    fixed_after_add = ("organization",)
    list_display = ["name", "organization", "start_date", "status", "created_at"]
    list_filter = ["status", organization_filter()]
    search_fields = ["name", "organization__name"]
    readonly_fields = ["status", "created_by", "created_at"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    inlines = [PlanItemInline]


@admin.register(PlanItem)
class PlanItemAdmin(LargeTableAdmin, OwnerFixedAdmin):
    # Level and seats are what Confirm users charged for: they change on the plan page (and
    # the level through the audited level change), never by editing the row.
    fixed_after_add = ("plan", "level", "seats")
    list_display = ["plan", "level", "seats"]
    list_filter = [organization_filter("plan__organization")]
    search_fields = ["plan__name", "level__course__title"]
    list_select_related = ["plan", "level__course"]
    autocomplete_fields = ["plan", "level"]


@admin.register(Participant)
class ParticipantAdmin(LargeTableAdmin, OwnerFixedAdmin):
    # A participant's enrollments, and the holds or redemptions behind them, follow them.
    # Their email is the address their join link belongs to.
    fixed_after_add = ("plan", "user", "email")
    list_display = ["email", "plan", "user", "confirmed_at", "removed_at"]
    list_filter = [organization_filter("plan__organization")]
    search_fields = ["email", "plan__name"]
    readonly_fields = ["invite_token", "confirmed_at", "removed_at", "created_at"]
    list_select_related = ["plan", "user"]
    autocomplete_fields = ["plan", "user"]


class LevelChoiceField(forms.ModelChoiceField):
    """Each level with its cost and what choosing it would charge (+) or give back (-)."""

    current_cost = 0

    def label_from_instance(self, obj: Level) -> str:
        return f"{obj} — {obj.credit_cost} credits ({obj.credit_cost - self.current_cost:+d})"


class LevelChangeForm(forms.Form):
    level = LevelChoiceField(queryset=Level.objects.none())
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))


def _credits(count: int) -> str:
    return f"{count:,} credit{'' if count == 1 else 's'}"


def _settled(change: LevelChange) -> str:
    """What a level change did with the credits, in words."""
    if change.hold_id:
        return f"The credits held for it are now {_credits(change.to_cost)}."
    words = []
    if change.credits_moved > 0:
        words.append(f"{_credits(change.credits_moved)} charged.")
    elif change.credits_moved < 0:
        words.append(f"{_credits(-change.credits_moved)} given back to the lots they came from.")
    if change.credits_not_returned:
        words.append(
            f"{_credits(change.credits_not_returned)} not given back: their lots expired or "
            "were revoked since, or they had been billed as overage."
        )
    return " ".join(words) or "The levels cost the same: no credits moved."


@admin.register(Enrollment)
class EnrollmentAdmin(LargeTableAdmin):
    """Support changes a learner's level here (seed 000: within 7 days of the plan's start);
    credits are settled through the ledger with the staff user and the reason."""

    list_display = ["participant", "level", "cost", "status", "progress", "plan_start"]
    list_filter = ["status", organization_filter("participant__plan__organization")]
    search_fields = ["participant__email", "participant__plan__name", "level__course__title"]
    readonly_fields = [
        "participant", "level", "cost", "status", "progress", "redemption", "hold",
        "started_at", "completed_at", "created_at",
    ]  # fmt: skip
    list_select_related = ["participant__plan", "level__course"]
    actions = ["change_level"]

    @admin.display(description="Plan starts")
    def plan_start(self, obj: Enrollment):
        return obj.participant.plan.start_date

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Change level (within 7 days of the plan's start)")
    def change_level(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Change one enrollment at a time.", messages.ERROR)
            return None
        enrollment = queryset.select_related("level__course", "participant__plan").get()
        form = LevelChangeForm(request.POST if "apply" in request.POST else None)
        form.fields["level"].queryset = Level.objects.filter(
            course=enrollment.level.course
        ).exclude(pk=enrollment.level_id)
        form.fields["level"].current_cost = enrollment.cost
        if "apply" in request.POST and form.is_valid():
            try:
                change = level_changes.enrollment_change_level(
                    enrollment=enrollment,
                    level=form.cleaned_data["level"],
                    staff=request.user,
                    reason=form.cleaned_data["reason"],
                )
            # The service turns the ledger's refusals into PlanRefused; any that slips
            # through is still a message here, never an error page.
            except (PlanRefused, CreditsError) as refusal:
                self.message_user(request, str(refusal), messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"{enrollment.participant} moved to {change.to_level}. {_settled(change)}",
                )
            return redirect(request.get_full_path())
        changes = enrollment.level_changes.select_related("from_level", "to_level", "staff")
        return render(
            request,
            "admin/training/change_level.html",
            {
                **self.admin_site.each_context(request),
                "enrollment": enrollment,
                "form": form,
                "changes": changes,
                "levels": [
                    (level, level.credit_cost - enrollment.cost)
                    for level in form.fields["level"].queryset
                ],
            },
        )


@admin.register(LevelChange)
class LevelChangeAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = [
        "enrollment", "from_level", "to_level", "from_cost", "to_cost", "credits_moved",
        "credits_not_returned", "staff", "created_at",
    ]  # fmt: skip
    search_fields = ["enrollment__participant__email", "reason", "staff__email"]
    list_select_related = [
        "enrollment__participant", "enrollment__level__course", "from_level__course",
        "to_level__course", "staff",
    ]  # fmt: skip


@admin.register(CourseManager)
class CourseManagerAdmin(LargeTableAdmin, OwnerFixedAdmin):
    # The manager's credits sit in an account keyed by organization, course and user.
    fixed_after_add = ("organization", "course", "user")
    list_display = ["user", "course", "organization", "created_at"]
    list_filter = [organization_filter()]
    search_fields = ["user__email", "course__title"]
    list_select_related = ["user", "course", "organization"]
    autocomplete_fields = ["organization", "course", "user"]


@admin.register(ItemAssignment)
class ItemAssignmentAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Seats change on the plan page, where the plan is locked while they do."""

    list_display = ["participant", "item", "confirmed_at", "created_at"]
    list_filter = [organization_filter("item__plan__organization")]
    search_fields = ["participant__email", "item__plan__name"]
    list_select_related = ["participant", "item__level__course", "item__plan"]


@admin.register(Assignment)
class AssignmentAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["email", "level", "status", "progress", "manager", "expires_at"]
    list_filter = ["status", organization_filter()]
    search_fields = ["email", "level__course__title", "manager__email"]
    list_select_related = ["level__course", "manager"]


@admin.register(CreditRequest)
class CreditRequestAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Managers' requests for credits: answered by the organization's admins on their
    dashboard, through the ledger; support only looks."""

    list_display = ["manager", "quantity", "status", "created_at", "answered_by", "answered_at"]
    list_filter = ["status", organization_filter()]
    search_fields = ["manager__user__email", "manager__course__title", "note"]
    list_select_related = ["manager__user", "manager__course", "answered_by"]
