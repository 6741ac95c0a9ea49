from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect, render

from catalog.models import Level
from config.admin import ReadOnlyAdmin

from . import services
from .models import Assignment, CourseManager, Enrollment, Participant, PlanItem, TrainingPlan


class PlanItemInline(admin.TabularInline):
    model = PlanItem
    extra = 0
    readonly_fields = ["level", "seats"]


@admin.register(TrainingPlan)
class TrainingPlanAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "start_date", "status", "created_at"]
    list_filter = ["status", "organization"]
    search_fields = ["name", "organization__name"]
    readonly_fields = ["status", "created_by", "created_at"]
    inlines = [PlanItemInline]


@admin.register(PlanItem)
class PlanItemAdmin(admin.ModelAdmin):
    list_display = ["plan", "level", "seats"]
    search_fields = ["plan__name", "level__course__title"]
    list_select_related = ["plan", "level__course"]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["email", "plan", "user", "confirmed_at", "removed_at"]
    list_filter = ["plan__organization"]
    search_fields = ["email", "plan__name"]
    readonly_fields = ["invite_token", "confirmed_at", "removed_at", "created_at"]
    list_select_related = ["plan", "user"]


class LevelChangeForm(forms.Form):
    level = forms.ModelChoiceField(queryset=Level.objects.none())
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    """Support changes a learner's level here (seed 000: within 7 days of the plan's start);
    credits are settled through the ledger with the staff user and the reason."""

    list_display = ["participant", "level", "cost", "status", "progress", "plan_start"]
    list_filter = ["status", "participant__plan__organization"]
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
        if "apply" in request.POST and form.is_valid():
            try:
                services.enrollment_change_level(
                    enrollment=enrollment,
                    level=form.cleaned_data["level"],
                    staff=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except services.PlanRefused as refusal:
                self.message_user(request, str(refusal), messages.ERROR)
            else:
                self.message_user(
                    request, f"{enrollment.participant} moved to {form.cleaned_data['level']}."
                )
            return redirect(request.get_full_path())
        return render(
            request,
            "admin/training/change_level.html",
            {**self.admin_site.each_context(request), "enrollment": enrollment, "form": form},
        )


@admin.register(CourseManager)
class CourseManagerAdmin(admin.ModelAdmin):
    list_display = ["user", "course", "organization", "created_at"]
    list_filter = ["organization"]
    search_fields = ["user__email", "course__title"]
    list_select_related = ["user", "course", "organization"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["email", "level", "status", "progress", "manager", "expires_at"]
    list_filter = ["status", "organization"]
    search_fields = ["email", "level__course__title", "manager__email"]
    list_select_related = ["level__course", "manager"]
