import uuid

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import admin_required, member_required
from accounts.models import Membership, User
from credits import selectors as credit_selectors
from credits.services import InsufficientCredits

from . import services
from .models import Assignment, Enrollment, Participant, TrainingPlan


@require_POST
@admin_required
def checkout(request: HttpRequest) -> HttpResponse:
    start = parse_date(request.POST.get("start_date", "") or "")
    if start is None:
        messages.error(request, "Choose the plan's start date.")
        return redirect("catalog:cart")
    try:
        plan = services.plan_create_from_cart(
            organization=request.organization,
            user=request.user,
            name=request.POST.get("name", ""),
            start_date=start,
        )
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("catalog:cart")
    messages.success(request, "Draft plan created. Add the people to train, then confirm them.")
    return redirect("training:plan", plan.pk)


@require_GET
@admin_required
def plans(request: HttpRequest) -> HttpResponse:
    items = TrainingPlan.objects.filter(organization=request.organization)
    return render(request, "training/plans.html", {"plans": items})


def _plan(request: HttpRequest, pk: int) -> TrainingPlan:
    return get_object_or_404(TrainingPlan, pk=pk, organization=request.organization)


def _plan_context(request: HttpRequest, plan: TrainingPlan) -> dict:
    cost = services.plan_cost(plan=plan)
    balance = credit_selectors.organization_balance(organization=request.organization)
    participants = plan.participants.prefetch_related("enrollments__level__course")
    enrolled_emails = set(plan.participants.values_list("email", flat=True))
    members = (
        Membership.objects.filter(organization=request.organization)
        .exclude(user__email__in=enrolled_emails)
        .select_related("user")
    )
    return {
        "plan": plan,
        "items": plan.items.select_related("level__course"),
        "participants": participants,
        "members": members,
        "cost": cost,
        "balance": balance,
        "shortfall": max(cost["total"] - balance.available, 0),
        "confirm_token": uuid.uuid4(),
        "policy_start": request.organization.redemption_point == "start",
    }


@require_GET
@admin_required
def plan(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    template = "training/plan.html"
    if request.htmx and request.htmx.target == "plan-body":
        template += "#body"
    return render(request, template, _plan_context(request, item))


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"


def _back_to_plan(request: HttpRequest, plan: TrainingPlan) -> HttpResponse:
    if request.htmx:
        plan.refresh_from_db()  # a confirmation has just changed its status
        return render(request, "training/plan.html#body", _plan_context(request, plan))
    return redirect("training:plan", plan.pk)


@require_POST
@admin_required
def participants_add(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    rows = request.POST.getlist("members") + services.split_emails(request.POST.get("emails", ""))
    try:
        if request.FILES.get("csv"):
            result = services.participants_add_csv(plan=item, data=request.FILES["csv"].read())
            extra = services.participants_add(plan=item, rows=rows) if rows else None
            if extra:
                result.added += extra.added
                result.rejected += extra.rejected
        else:
            result = services.participants_add(plan=item, rows=rows)
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
        return _back_to_plan(request, item)
    if result.added:
        messages.success(request, f"Added {_people(len(result.added))}.")
    for row, reason in result.rejected:
        messages.warning(request, f"Not added: “{row}” ({reason}).")
    if not result.added and not result.rejected:
        messages.info(request, "Choose members or enter email addresses to add.")
    return _back_to_plan(request, item)


@require_POST
@admin_required
def participant_remove(request: HttpRequest, pk: int, participant_id: int) -> HttpResponse:
    item = _plan(request, pk)
    person = get_object_or_404(Participant, pk=participant_id, plan=item)
    try:
        messages.info(request, services.participant_remove(participant=person, user=request.user))
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    return _back_to_plan(request, item)


@require_POST
@admin_required
def confirm(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    token = request.POST.get("token", "")
    try:
        uuid.UUID(token)
        count = services.plan_confirm(plan=item, user=request.user, token=token)
    except ValueError:
        messages.error(request, "The page was out of date; nothing was charged. Try again.")
    except InsufficientCredits as short:
        url = (
            reverse("billing:add_credits")
            + f"?need={short.shortfall}&next={reverse('training:plan', args=[item.pk])}"
        )
        messages.warning(
            request,
            f"Not enough credits: nothing was charged. Buy the {short.shortfall} missing "
            "credits, then confirm again.",
        )
        if request.htmx:
            response = HttpResponse(status=204)
            response["HX-Redirect"] = url
            return response
        return redirect(url)
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    else:
        if count:
            messages.success(request, f"{_people(count)} confirmed; they are getting their email.")
        else:
            messages.info(request, "Everyone in this plan is already confirmed.")
    return _back_to_plan(request, item)


@require_POST
@admin_required
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    try:
        services.plan_cancel(plan=item)
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("training:plan", item.pk)
    messages.success(request, f"Plan {item.name} cancelled. Nothing was charged.")
    return redirect("training:plans")


@require_GET
@member_required()
def my_training(request: HttpRequest) -> HttpResponse:
    enrollments = (
        Enrollment.objects.filter(
            participant__user=request.user,
            participant__plan__organization=request.organization,
            participant__removed_at__isnull=True,
        )
        .exclude(status=Enrollment.Status.REMOVED)
        .select_related("level__course", "participant__plan")
    )
    courses = Assignment.objects.filter(
        organization=request.organization,
        user=request.user,
        status__in=[
            Assignment.Status.ACCEPTED,
            Assignment.Status.STARTED,
            Assignment.Status.COMPLETED,
        ],
    ).select_related("level__course")
    return render(
        request, "training/my_training.html", {"enrollments": enrollments, "courses": courses}
    )


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
    else:
        messages.success(request, f"Started {enrollment.level}. Good luck!")
    return redirect("training:my_training")


@require_POST
@member_required()
def enrollment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    enrollment = _my_enrollment(request, pk)
    try:
        progress = int(request.POST.get("progress", ""))
        services.enrollment_progress(enrollment=enrollment, progress=progress)
    except ValueError:
        messages.error(request, "Choose how far you are.")
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    return redirect("training:my_training")


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """An invited email address accepts: an account (or the signed-in one, if it is that
    address) becomes a learner of the organization and takes the plan's place."""
    person = get_object_or_404(
        Participant.objects.select_related("plan__organization"),
        invite_token=token,
        removed_at__isnull=True,
    )
    organization = person.plan.organization
    existing = User.objects.filter(email__iexact=person.email).first()
    if request.user.is_authenticated and request.user.email.lower() != person.email:
        return render(
            request, "training/join.html", {"person": person, "wrong_account": True}, status=403
        )
    errors = []
    if request.method == "POST" or (request.user.is_authenticated and existing):
        user = request.user if request.user.is_authenticated else existing
        if user is None:
            password = request.POST.get("password", "")
            candidate = User(email=person.email)
            try:
                validate_password(password, candidate)
            except ValidationError as error:
                errors = error.messages
            else:
                user = User.objects.create_user(email=person.email, password=password)
        elif not request.user.is_authenticated:
            return redirect(f"{reverse('login')}?next={request.path}")
        if user is not None:
            with transaction.atomic():
                Membership.objects.get_or_create(
                    user=user, organization=organization, defaults={"role": "learner"}
                )
                Participant.objects.filter(pk=person.pk).update(user=user)
            if not request.user.is_authenticated:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session["organization_id"] = organization.pk
            messages.success(request, f"Welcome to {organization.name}'s training.")
            return redirect("training:my_training")
    return render(
        request,
        "training/join.html",
        {"person": person, "needs_login": existing is not None, "errors": errors},
    )
