"""Training plans: the list, a plan's page (people, seats, Confirm users), checkout."""

import uuid

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from accounts.decorators import admin_required
from accounts.models import Membership
from billing.shortfall import shortfall_for
from credits import selectors as credit_selectors
from credits.services import CreditsError, InsufficientCredits
from training.common import people_phrase
from training.models import Participant, PlanItem, TrainingPlan

from . import services, turnover
from .forms import (
    AddPeopleForm,
    AssignmentForm,
    BulkRemoveForm,
    CheckoutForm,
    ConfirmForm,
    MemberSearchForm,
    PageForm,
    PeopleFilterForm,
    ReplaceForm,
    SeatsForm,
)

# A CSV of thousands of bad rows is summarised, not listed.
REJECTED_SHOWN = 20
# People per page of a plan's list: a plan of thousands is a page of rows, not a directory.
PEOPLE_PER_PAGE = 50
# Members shown by one search of the picker.
MEMBERS_SHOWN = 20
# Plans per page of the plans list: years of plans are pages, newest first.
PLANS_PER_PAGE = 25


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
    form = PageForm(request.GET)
    number = form.cleaned_data.get("page") if form.is_valid() else None
    # Newest first by the index (organization, -created_at, -id); the id breaks ties so
    # that no plan shows on two pages or on none.
    items = TrainingPlan.objects.filter(organization=request.organization).order_by(
        "-created_at", "-pk"
    )
    page = Paginator(items, PLANS_PER_PAGE).get_page(number or 1)
    return render(request, "training/plans.html", {"plans": page})


def _plan(request: HttpRequest, pk: int) -> TrainingPlan:
    return get_object_or_404(TrainingPlan, pk=pk, organization=request.organization)


def _people_filter(request: HttpRequest) -> QueryDict:
    """The People list's search, status and page: the query string of a GET, or the same
    fields sent along with a POST from that page (hx-include), so that a Remove or a
    Confirm answers with the list as the admin was looking at it."""
    source = request.GET if request.method == "GET" else request.POST
    kept = QueryDict(mutable=True)
    for name in ("q", "status", "page"):
        if source.get(name):
            kept[name] = source.get(name)
    return kept


def _people(plan: TrainingPlan, data: QueryDict) -> dict:
    form = PeopleFilterForm(data)
    chosen = form.cleaned_data if form.is_valid() else {}
    people: QuerySet[Participant] = plan.participants.order_by("id")
    if chosen.get("q"):
        people = people.filter(email__icontains=chosen["q"])
    status = chosen.get("status")
    if status == "pending":
        people = people.filter(removed_at__isnull=True, confirmed_at__isnull=True)
    elif status == "confirmed":
        people = people.filter(removed_at__isnull=True, confirmed_at__isnull=False)
    elif status == "removed":
        people = people.filter(removed_at__isnull=False)
    page = Paginator(
        people.prefetch_related("enrollments__level__course", "assignments"), PEOPLE_PER_PAGE
    ).get_page(chosen.get("page") or 1)
    query = data.copy()
    query.pop("page", None)
    filtered = bool(chosen.get("q") or status)
    return {
        "people_form": form,
        "people_page": page,
        "people_filtered": filtered,
        "people_query": query.urlencode(),
        # Unfiltered, the paginator has counted them already.
        "people_total": plan.participants.count() if filtered else page.paginator.count,
    }


def _members_found(request: HttpRequest, plan: TrainingPlan, text: str) -> list[Membership]:
    """Up to MEMBERS_SHOWN members not yet in the plan whose address contains `text`."""
    found = (
        Membership.objects.filter(organization=request.organization)
        .exclude(user__email__in=plan.participants.values("email"))
        .select_related("user")
        .order_by("user__email")
    )
    if text:
        found = found.filter(Q(user__email__icontains=text) | Q(user__first_name__icontains=text))
    return list(found[:MEMBERS_SHOWN])


def _plan_context(request: HttpRequest, plan: TrainingPlan) -> dict:
    cost = services.plan_cost(plan=plan)
    balance = credit_selectors.organization_balance(organization=request.organization)
    search = MemberSearchForm(request.GET if request.method == "GET" else None)
    member_q = search.cleaned_data["member_q"] if search.is_valid() else ""
    return {
        "plan": plan,
        "cost": cost,
        "items": cost.items,
        **_people(plan, _people_filter(request)),
        "member_q": member_q,
        "members_found": _members_found(request, plan, member_q) if member_q else [],
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
@vary_on_headers("HX-Request")  # its People fragment is pushed to the page's own address
def plan(request: HttpRequest, pk: int) -> HttpResponse:
    item = _plan(request, pk)
    template = "training/plan.html"
    if request.htmx and request.htmx.target in ("plan-body", "people"):
        template += "#body" if request.htmx.target == "plan-body" else "#people"
    return render(request, template, _plan_context(request, item))


@require_GET
@admin_required
def member_search(request: HttpRequest, pk: int) -> HttpResponse:
    """The picker's results as the admin types (htmx); without script, the same search
    runs on the plan page itself (`member_q` in its query string)."""
    item = _plan(request, pk)
    form = MemberSearchForm(request.GET)
    text = form.cleaned_data["member_q"] if form.is_valid() else ""
    if not request.htmx:
        return redirect(reverse("training:plan", args=[item.pk]) + f"?{request.GET.urlencode()}")
    return render(
        request,
        "training/plan.html#member_results",
        {"plan": item, "member_q": text, "members_found": _members_found(request, item, text)},
    )


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
    form = AddPeopleForm(request.POST, request.FILES, organization=request.organization)
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
def participants_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove selected: each person as Remove would, each in a transaction of its own, so
    that one who has started (and cannot be removed) holds back no one else."""
    item = _plan(request, pk)
    form = BulkRemoveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Tick the people to remove first.")
        return _back_to_plan(request, item)
    people = list(
        Participant.objects.filter(
            plan=item, pk__in=form.cleaned_data["participants"], removed_at__isnull=True
        ).order_by("id")
    )
    removed, refused = 0, []
    for person in people:
        try:
            services.participant_remove(participant=person, user=request.user)
        except (services.PlanRefused, CreditsError) as refusal:
            refused.append(str(refusal))
        else:
            removed += 1
    if removed:
        messages.success(request, f"Removed {people_phrase(removed)}.")
    for reason in refused[:REJECTED_SHOWN]:
        messages.error(request, reason)
    if len(refused) > REJECTED_SHOWN:
        messages.error(request, f"…and {len(refused) - REJECTED_SHOWN:,} more not removed.")
    if not removed and not refused:
        messages.info(request, "Everyone ticked was already removed.")
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


@require_POST
@admin_required
def participant_replace(request: HttpRequest, pk: int, participant_id: int) -> HttpResponse:
    """Replace learner: a confirmed person's seat, not started, goes to someone else with
    its hold (or redemption); nothing is released or charged."""
    item = _plan(request, pk)
    person = get_object_or_404(Participant, pk=participant_id, plan=item)
    form = ReplaceForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
    else:
        try:
            new = turnover.participant_replace(
                participant=person, email=form.cleaned_data["email"], user=request.user
            )
        except (services.PlanRefused, CreditsError) as refusal:
            messages.error(request, str(refusal))
        else:
            messages.success(
                request,
                f"{person.email}'s seat is now {new.email}'s, with the same credits; "
                f"{new.email} is getting their email.",
            )
    if form.is_valid() and form.cleaned_data["back"] == "not_started":
        return redirect("training:not_started")
    return _back_to_plan(request, item)


# Seats per page of the "not started for two weeks" list.
NOT_STARTED_PER_PAGE = 50


@never_cache
@require_GET
@admin_required
def not_started(request: HttpRequest) -> HttpResponse:
    form = PageForm(request.GET)
    number = form.cleaned_data.get("page") if form.is_valid() else None
    seats = Paginator(
        turnover.not_started(organization=request.organization), NOT_STARTED_PER_PAGE
    ).get_page(number or 1)
    return render(request, "training/not_started.html", {"seats": seats})
