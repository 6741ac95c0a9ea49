"""Assign credits (admins): the pool, each course's earmark and its managers' shares."""

import uuid

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import admin_required, member_required
from accounts.models import Membership, User
from catalog.models import Course, Level
from credits import selectors as credit_selectors
from credits.models import Account
from credits.services import CreditsError, InsufficientCredits
from training.common import form_errors_shown
from training.models import CourseManager, CreditRequest

from . import requests, services
from .forms import (
    AllocationForm,
    AllocationsPageForm,
    CreditRequestAnswerForm,
    CreditRequestForm,
    MemberLookupForm,
)

# Suggestions offered as the admin types a member's address.
MEMBERS_SUGGESTED = 10


# Courses per page, managers shown under each (the rest behind "all managers"), and
# managers per page of a single course: the page costs what it shows.
COURSES_PER_PAGE = 10
MANAGERS_SHOWN = 10
MANAGERS_PER_PAGE = 50


@never_cache
@require_GET
@admin_required
def allocations(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    chosen = AllocationsPageForm(request.GET)
    chosen.is_valid()  # a field in error is left out of cleaned_data: its first page then
    choice = chosen.cleaned_data
    published = Course.objects.filter(published=True).prefetch_related("levels")
    one_course = published.filter(pk=choice["course"]).first() if choice.get("course") else None
    if one_course is not None:
        courses = [one_course]
        course_page = None
    else:
        course_page = Paginator(published.order_by("title", "id"), COURSES_PER_PAGE).get_page(
            choice.get("page") or 1
        )
        courses = list(course_page.object_list)
    course_ids = [course.pk for course in courses]
    counts = dict(
        CourseManager.objects.filter(organization=organization, course_id__in=course_ids)
        .values("course_id")
        .annotate(n=Count("id"))
        .values_list("course_id", "n")
    )
    managed = CourseManager.objects.filter(organization=organization).select_related("user")
    manager_page = None
    if one_course is not None:
        manager_page = Paginator(
            managed.filter(course=one_course).order_by("user__email", "id"), MANAGERS_PER_PAGE
        ).get_page(choice.get("managers_page") or 1)
        shown = {one_course.pk: list(manager_page.object_list)}
    else:
        # The first few managers of every course on the page, in one query.
        ranked = managed.filter(course_id__in=course_ids).annotate(
            rank=Window(
                RowNumber(), partition_by=F("course_id"), order_by=[F("user__email"), F("id")]
            )
        )
        shown = {course_id: [] for course_id in course_ids}
        for manager in ranked.filter(rank__lte=MANAGERS_SHOWN).order_by("course_id", "rank"):
            shown[manager.course_id].append(manager)
    # Figures for the accounts on the page only: the pool, these courses, these managers.
    wanted = Q(kind=Account.Kind.POOL) | Q(kind=Account.Kind.COURSE, course_id__in=course_ids)
    for course_id, rows in shown.items():
        wanted |= Q(
            kind=Account.Kind.MANAGER,
            course_id=course_id,
            manager_id__in=[m.user_id for m in rows],
        )
    accounts = list(Account.objects.filter(wanted, organization=organization))
    figures = credit_selectors.account_figures(accounts=accounts)
    by_scope = {(a.kind, a.course_id, a.manager_id): figures[a.pk] for a in accounts}

    def figures_of(kind: str, course_id=None, manager_id=None):
        return by_scope.get((kind, course_id, manager_id), credit_selectors.NO_FIGURES)

    rows = [
        {
            "course": course,
            "figures": figures_of(Account.Kind.COURSE, course.pk),
            "manager_count": counts.get(course.pk, 0),
            "managers": [
                {"manager": m, "figures": figures_of(Account.Kind.MANAGER, course.pk, m.user_id)}
                for m in shown[course.pk]
            ],
        }
        for course in courses
    ]
    return render(
        request,
        "training/allocations.html",
        {
            "rows": rows,
            "one_course": one_course,
            "course_page": course_page,
            "manager_page": manager_page,
            "managers_shown": MANAGERS_SHOWN,
            "pool": figures_of(Account.Kind.POOL),
            "balance": credit_selectors.organization_balance(organization=organization),
            "token": uuid.uuid4(),
        },
    )


@require_GET
@admin_required
def member_suggestions(request: HttpRequest) -> HttpResponse:
    """The `<option>`s of the page's member datalist for what has been typed: a handful of
    members, never the whole directory (htmx; the boxes also take a full address typed)."""
    form = MemberLookupForm(request.GET)
    text = form.cleaned_data["email"] if form.is_valid() else ""
    found = []
    if text:
        found = list(
            Membership.objects.filter(organization=request.organization)
            .filter(Q(user__email__icontains=text) | Q(user__first_name__icontains=text))
            .select_related("user")
            .order_by("user__email")[:MEMBERS_SUGGESTED]
        )
    return render(request, "training/allocations.html#member_options", {"found": found})


def _member(request: HttpRequest, data: dict) -> User:
    """The member a register or enroll form names: by id (older pages) or by address."""
    members = User.objects.filter(memberships__organization=request.organization)
    if data.get("user"):
        return get_object_or_404(members, pk=data["user"])
    user = members.filter(email__iexact=data["email"]).first()
    if user is None:
        raise services.AllocationRefused(
            f"No member of {request.organization.name} has the address {data['email'][:254]}. "
            "Check it, or invite them to a training plan first."
        )
    return user


@require_POST
@admin_required
def allocation_action(request: HttpRequest) -> HttpResponse:
    """Every form of the Assign credits page posts here with its `action`."""
    organization = request.organization
    form = AllocationForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("training:allocations")
    data = form.cleaned_data
    action, quantity = data["action"], data["quantity"]
    # Without a token (an old page), each post is its own request.
    key = f"ui:{data['token'] or uuid.uuid4()}"
    # Back to the course acted on (it may be on any page of courses), or to the first page.
    course_id = data["course"]
    try:
        if action in ("allocate", "release"):
            course = get_object_or_404(Course, pk=data["course"])
            do = services.course_allocate if action == "allocate" else services.course_release
            do(
                organization=organization,
                course=course,
                quantity=quantity,
                actor=request.user,
                key=key,
            )
            messages.success(
                request, f"{quantity:,} credit{pluralize(quantity)} moved for {course}."
            )
        elif action == "register":
            course = get_object_or_404(Course, pk=data["course"])
            user = _member(request, data)
            services.manager_register(organization=organization, course=course, user=user)
            messages.success(request, f"{user.email} now manages {course}.")
        elif action in ("assign", "take_back"):
            manager = get_object_or_404(
                CourseManager, pk=data["manager"], organization=organization
            )
            course_id = manager.course_id
            do = services.manager_assign if action == "assign" else services.manager_take_back
            do(manager=manager, quantity=quantity, actor=request.user, key=key)
            messages.success(
                request,
                f"{quantity:,} credit{pluralize(quantity)} moved for {manager.user.email}.",
            )
        else:  # enroll
            user = _member(request, data)
            level = get_object_or_404(Level, pk=data["level"])
            course_id = level.course_id
            services.manual_enroll(
                organization=organization,
                user=user,
                level=level,
                actor=request.user,
                token=str(data["token"] or uuid.uuid4()),
            )
            messages.success(request, f"{user.email} is enrolled in {level}.")
    except InsufficientCredits as short:
        # The shortfall detour: buy exactly what is missing, then come back here.
        messages.warning(request, f"{short} Nothing was moved.")
        return redirect(
            reverse("billing:add_credits")
            + f"?need={short.shortfall}&next={reverse('training:allocations')}"
        )
    except (services.AllocationRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    return redirect(_course_page(course_id))


def _course_page(course_id: int | None) -> str:
    page = reverse("training:allocations")
    return f"{page}?course={course_id}" if course_id else page


@require_POST
@member_required("manager", "admin")
def credit_request_create(request: HttpRequest, pk: int) -> HttpResponse:
    """A manager asks for credits for one of their courses, from that course's page."""
    manager = get_object_or_404(
        CourseManager.objects.select_related("course", "organization"),
        pk=pk,
        organization=request.organization,
        user=request.user,
    )
    form = CreditRequestForm(request.POST)
    if not form.is_valid():
        form_errors_shown(request, form)
        return redirect("training:managed_course", manager.pk)
    try:
        asked = requests.credit_request_create(
            manager=manager,
            quantity=form.cleaned_data["quantity"],
            note=form.cleaned_data["note"],
            token=form.cleaned_data["token"],
        )
    except requests.RequestRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(
            request,
            f"Asked your admins for {asked.quantity:,} credit{pluralize(asked.quantity)}; "
            "you will get an email when one of them answers.",
        )
    return redirect("training:managed_course", manager.pk)


@require_POST
@admin_required
def credit_request_answer(request: HttpRequest, pk: int) -> HttpResponse:
    """An admin approves or declines a manager's request, from the dashboard."""
    # Another organization's request does not exist here (the service checks again under
    # the row's lock).
    get_object_or_404(CreditRequest, pk=pk, organization=request.organization)
    form = CreditRequestAnswerForm(request.POST)
    if not form.is_valid():
        form_errors_shown(request, form)
        return redirect("dashboard")
    decision, note = form.cleaned_data["decision"], form.cleaned_data["note"]
    answer = {"request_id": pk, "organization": request.organization, "actor": request.user}
    try:
        if decision == "approve":
            done = requests.credit_request_approve(**answer, note=note)
            messages.success(
                request,
                f"Approved: {done.quantity:,} credit{pluralize(done.quantity)} moved to "
                f"{done.manager.user.email} for {done.manager.course}.",
            )
        else:
            done = requests.credit_request_decline(**answer, note=note)
            messages.success(request, f"Declined; {done.manager.user.email} is told by email.")
    except requests.RequestAnswered as answered:
        messages.info(request, str(answered))
    except (requests.RequestRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    return redirect("dashboard")
