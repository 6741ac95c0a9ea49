import uuid

from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.decorators import admin_required, member_required
from accounts.models import Membership, User
from billing.shortfall import shortfall_for
from credits import selectors as credit_selectors
from credits.services import CreditsError, InsufficientCredits

from . import joining, services
from .forms import AcceptForm, ProgressForm
from .models import Assignment, Enrollment, Participant, PlanItem, TrainingPlan
from .plan_forms import AddPeopleForm, AssignmentForm, CheckoutForm, ConfirmForm, SeatsForm
from .services import people_phrase

# A CSV of thousands of bad rows is summarised, not listed.
REJECTED_SHOWN = 20


@require_POST
@admin_required
def checkout(request: HttpRequest) -> HttpResponse:
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            label = {"name": "Plan name", "start_date": "Start date"}.get(field, field)
            messages.error(request, f"{label}: {' '.join(errors)}")
        return redirect("catalog:cart")
    try:
        plan = services.plan_create_from_cart(
            organization=request.organization,
            user=request.user,
            name=form.cleaned_data["name"],
            start_date=form.cleaned_data["start_date"],
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
    participants = plan.participants.prefetch_related("enrollments__level__course", "assignments")
    enrolled_emails = set(plan.participants.values_list("email", flat=True))
    members = (
        Membership.objects.filter(organization=request.organization)
        .exclude(user__email__in=enrolled_emails)
        .select_related("user")
    )
    return {
        "plan": plan,
        "cost": cost,
        "items": cost.items,
        "participants": participants,
        "members": members,
        "balance": balance,
        "shortfall": shortfall_for(
            organization=request.organization, need=cost.total, balance=balance
        ),
        "confirm_token": uuid.uuid4(),
        "policy_start": request.organization.redemption_point == "start",
    }


@never_cache
@require_GET
@admin_required
def plan(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    template = "training/plan.html"
    if request.htmx and request.htmx.target == "plan-body":
        template += "#body"
    return render(request, template, _plan_context(request, item))


def _back_to_plan(request: HttpRequest, plan: TrainingPlan) -> HttpResponse:
    if request.htmx:
        plan.refresh_from_db()  # a confirmation has just changed its status
        response = render(request, "training/plan.html#body", _plan_context(request, plan))
        add_never_cache_headers(response)
        return response
    return redirect("training:plan", plan.pk)


def _form_errors(request: HttpRequest, form) -> None:
    for field, errors in form.errors.items():
        messages.error(request, f"{field.replace('_', ' ').capitalize()}: {' '.join(errors)}")


@require_POST
@admin_required
def participants_add(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    member_emails = list(
        Membership.objects.filter(organization=request.organization).values_list(
            "user__email", flat=True
        )
    )
    form = AddPeopleForm(request.POST, request.FILES, member_emails=member_emails)
    if not form.is_valid():
        _form_errors(request, form)
        return _back_to_plan(request, item)
    rows = form.cleaned_data["members"] + services.split_emails(form.cleaned_data["emails"])
    try:
        if form.cleaned_data["csv"]:
            result = services.participants_add_csv(plan=item, data=form.cleaned_data["csv"].read())
            extra = services.participants_add(plan=item, rows=rows) if rows else None
            if extra:
                result.added += extra.added
                result.rejected += extra.rejected
                result.seats_raised += extra.seats_raised
        else:
            result = services.participants_add(plan=item, rows=rows)
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
        return _back_to_plan(request, item)
    if result.added:
        messages.success(request, f"Added {people_phrase(len(result.added))}.")
    for level_item, seats in result.seats_raised:
        messages.info(request, f"{level_item.level} now has {seats:,} seats, to fit everyone.")
    for row, reason in result.rejected[:REJECTED_SHOWN]:
        messages.warning(request, f"Not added: “{row[:100]}” ({reason}).")
    if len(result.rejected) > REJECTED_SHOWN:
        messages.warning(
            request, f"…and {len(result.rejected) - REJECTED_SHOWN:,} more rows not added."
        )
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
    except (services.PlanRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    return _back_to_plan(request, item)


@require_POST
@admin_required
def item_seats(request: HttpRequest, pk: int, item_id: int) -> HttpResponse:
    plan = _plan(request, pk)
    level_item = get_object_or_404(PlanItem, pk=item_id, plan=plan)
    form = SeatsForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _back_to_plan(request, plan)
    try:
        services.item_seats_set(item=level_item, seats=form.cleaned_data["seats"])
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{level_item.level}: {form.cleaned_data['seats']:,} seats.")
    return _back_to_plan(request, plan)


@require_POST
@admin_required
def assignment_toggle(request: HttpRequest, pk: int, item_id: int) -> HttpResponse:
    plan = _plan(request, pk)
    level_item = get_object_or_404(PlanItem, pk=item_id, plan=plan)
    form = AssignmentForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _back_to_plan(request, plan)
    person = get_object_or_404(Participant, pk=form.cleaned_data["participant"], plan=plan)
    try:
        seated = services.assignment_toggle(item=level_item, participant=person)
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    else:
        verb = "now takes a seat in" if seated else "no longer takes a seat in"
        messages.success(request, f"{person.email} {verb} {level_item.level}.")
    return _back_to_plan(request, plan)


@require_POST
@admin_required
def confirm(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    form = ConfirmForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, "The page was out of date; nothing was charged. Check and try again."
        )
        return _back_to_plan(request, item)
    try:
        result = services.plan_confirm(
            plan=item,
            user=request.user,
            token=str(form.cleaned_data["token"]),
            snapshot=form.cleaned_data["snapshot"],
        )
    except InsufficientCredits as short:
        url = (
            reverse("billing:add_credits")
            + f"?need={short.shortfall}&next={reverse('training:plan', args=[item.pk])}"
        )
        messages.warning(
            request,
            f"Not enough credits: nothing was charged. Buy the {short.shortfall:,} missing "
            f"credit{pluralize(short.shortfall)}, then confirm again.",
        )
        if request.htmx:
            return HttpResponseClientRedirect(url)
        return redirect(url)
    except services.PlanChanged as changed:
        messages.warning(request, str(changed))
    except (services.PlanRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    else:
        if result.replayed:
            messages.info(
                request,
                f"This confirmation was already done: {people_phrase(result.people)} confirmed for "
                f"{result.credits:,} credit{pluralize(result.credits)}. Nothing was charged again.",
            )
        elif result.people:
            messages.success(
                request, f"{people_phrase(result.people)} confirmed; they are getting their email."
            )
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


@never_cache
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
    form = ProgressForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how far you are (0 to 100%).")
        return redirect("training:my_training")
    try:
        services.enrollment_progress(enrollment=enrollment, progress=form.cleaned_data["progress"])
    except services.PlanRefused as refusal:
        messages.error(request, str(refusal))
    return redirect("training:my_training")


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """A training plan's invitation link. GET only shows what it joins, with a button; the
    POST joins: as the signed-in account if it is the invited address, else as a new account
    with the chosen password (an address that has an account logs in first). A removed
    participant, or a cancelled or completed plan, gets a page that says so; account,
    membership and place in the plan are created together or not at all."""
    user = request.user if request.user.is_authenticated else None

    def refused(refusal: joining.JoinRefused) -> HttpResponse:
        # 410 Gone for a link that will never work again; the others can be put right.
        status = {"unknown": 404, "not_yours": 403, "used": 409}.get(refusal.reason, 410)
        context = {"refusal": str(refusal), "sign_in": refusal.sign_in and user is None}
        return render(request, "training/join.html", context, status=status)

    def joined(person: Participant, message: str) -> HttpResponse:
        request.session["organization_id"] = person.plan.organization_id
        messages.success(request, message)
        return redirect("training:my_training")

    try:
        person = joining.participant_for_link(token=token, user=user)
    except joining.JoinRefused as refusal:
        return refused(refusal)
    if joining.already_joined(person, user):
        return joined(person, f"You are already in the training plan {person.plan.name}.")
    has_account = user is None and User.objects.filter(email__iexact=person.email).exists()
    form = AcceptForm(
        request.POST if request.method == "POST" else None,
        email=person.email,
        needs_password=user is None and not has_account,
    )
    context = {"person": person, "form": form, "needs_login": has_account}
    if request.method == "GET":
        return render(request, "training/join.html", context)
    if has_account:
        return redirect(f"{reverse('login')}?next={request.path}")
    if not form.is_valid():
        return render(request, "training/join.html", context, status=400)
    try:
        person = joining.plan_join(token=token, user=user, password=form.cleaned_data["password"])
    except joining.AccountExists:
        # Created a moment ago (another tab, another invitation): it logs in, then joins.
        messages.info(request, f"{person.email} has an account now: log in to join.")
        return redirect(f"{reverse('login')}?next={request.path}")
    except joining.JoinRefused as refusal:
        return refused(refusal)
    if user is None:
        login(request, person.user, backend="django.contrib.auth.backends.ModelBackend")
    return joined(person, f"Welcome to {person.plan.organization.name}'s training.")
