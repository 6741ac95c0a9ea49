"""My training (learners): their plans' courses and the courses managers invited them to."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import member_required
from credits.services import InsufficientCredits
from training.models import Assignment, Enrollment

from . import selectors, services
from .forms import ProgressForm


@never_cache
@require_GET
@member_required()
def my_training(request: HttpRequest) -> HttpResponse:
    context = {
        "enrollments": selectors.my_enrollments(
            organization=request.organization, user=request.user
        ),
        "courses": selectors.my_courses(organization=request.organization, user=request.user),
    }
    return render(request, "training/my_training.html", context)


def _my_enrollment(request: HttpRequest, pk: int) -> Enrollment:
    return get_object_or_404(
        Enrollment.objects.select_related("participant__plan__organization", "hold"),
        pk=pk,
        participant__user=request.user,
        participant__plan__organization=request.organization,
    )


@require_POST
@member_required()
def enrollment_start(request: HttpRequest, pk: int) -> HttpResponse:
    enrollment = _my_enrollment(request, pk)
    try:
        services.enrollment_start(enrollment=enrollment, user=request.user)
    except InsufficientCredits:
        messages.error(
            request,
            "Your organization has no credits left for this course. Your admin has been "
            "asked to add credits; please try again later.",
        )
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"Started {enrollment.level}. Good luck!")
    return redirect("training:my_training")


@require_POST
@member_required()
def enrollment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    enrollment = _my_enrollment(request, pk)
    form = ProgressForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how far you are (0 to 100%).")
        return redirect("training:my_training")
    try:
        services.enrollment_progress(enrollment=enrollment, progress=form.cleaned_data["progress"])
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    return redirect("training:my_training")


@require_POST
@member_required()
def assignment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(
        Assignment, pk=pk, organization=request.organization, user=request.user
    )
    form = ProgressForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how far you are (0 to 100%).")
        return redirect("training:my_training")
    services.assignment_progress(assignment=item, progress=form.cleaned_data["progress"])
    return redirect("training:my_training")
