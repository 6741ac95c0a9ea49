"""Assign credits (admins), My courses (managers), accepting an invitation (learners)."""

import uuid

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import admin_required, member_required
from accounts.models import Membership, User
from catalog.models import Course, Level
from credits import selectors as credit_selectors
from credits.models import Account
from credits.services import CreditsError, InsufficientCredits

from . import assignments
from .models import Assignment, CourseManager


def _number(request: HttpRequest, name: str) -> int:
    try:
        return int(request.POST.get(name, ""))
    except ValueError:
        return 0


@require_GET
@admin_required
def allocations(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    # A read: accounts not created yet count as empty; figures come in three queries.
    accounts = list(Account.objects.filter(organization=organization))
    figures = credit_selectors.account_figures(accounts=accounts)
    by_scope = {(a.kind, a.course_id, a.manager_id): figures[a.pk] for a in accounts}

    def figures_of(kind: str, course_id=None, manager_id=None):
        return by_scope.get((kind, course_id, manager_id), credit_selectors.NO_FIGURES)

    managers = list(CourseManager.objects.filter(organization=organization).select_related("user"))
    rows = [
        {
            "course": course,
            "figures": figures_of(Account.Kind.COURSE, course.pk),
            "managers": [
                {"manager": m, "figures": figures_of(Account.Kind.MANAGER, course.pk, m.user_id)}
                for m in managers
                if m.course_id == course.pk
            ],
        }
        for course in Course.objects.filter(published=True).prefetch_related("levels")
    ]
    members = Membership.objects.filter(organization=organization).select_related("user")
    return render(
        request,
        "training/allocations.html",
        {
            "rows": rows,
            "pool": figures_of(Account.Kind.POOL),
            "members": members,
            "token": uuid.uuid4(),
        },
    )


@require_POST
@admin_required
def allocation_action(request: HttpRequest) -> HttpResponse:
    """Every form of the Assign credits page posts here with its `action`."""
    organization = request.organization
    action = request.POST.get("action", "")
    quantity = _number(request, "quantity")
    try:
        if action in ("allocate", "release"):
            course = get_object_or_404(Course, pk=_number(request, "course"))
            do = assignments.course_allocate if action == "allocate" else assignments.course_release
            do(organization=organization, course=course, quantity=quantity, actor=request.user)
            messages.success(request, f"{quantity} credits moved for {course}.")
        elif action == "register":
            course = get_object_or_404(Course, pk=_number(request, "course"))
            user = get_object_or_404(
                User, pk=_number(request, "user"), memberships__organization=organization
            )
            assignments.manager_register(organization=organization, course=course, user=user)
            messages.success(request, f"{user.email} now manages {course}.")
        elif action in ("assign", "take_back"):
            manager = get_object_or_404(
                CourseManager, pk=_number(request, "manager"), organization=organization
            )
            do = assignments.manager_assign if action == "assign" else assignments.manager_take_back
            do(manager=manager, quantity=quantity, actor=request.user)
            messages.success(request, f"{quantity} credits moved for {manager.user.email}.")
        elif action == "enroll":
            user = get_object_or_404(
                User, pk=_number(request, "user"), memberships__organization=organization
            )
            level = get_object_or_404(Level, pk=_number(request, "level"))
            assignments.manual_enroll(
                organization=organization,
                user=user,
                level=level,
                actor=request.user,
                token=request.POST.get("token", "") or str(uuid.uuid4()),
            )
            messages.success(request, f"{user.email} is enrolled in {level}.")
        else:
            messages.error(request, "Unknown action.")
    except InsufficientCredits as short:
        # The shortfall detour: buy exactly what is missing, then come back here.
        messages.warning(request, f"{short} Nothing was moved.")
        return redirect(
            reverse("billing:add_credits")
            + f"?need={short.shortfall}&next={reverse('training:allocations')}"
        )
    except (assignments.AllocationRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    return redirect("training:allocations")


def _manager_figures(managers: list[CourseManager]) -> dict:
    """Each manager's figures, without creating accounts on a read (none yet: all zero)."""
    if not managers:
        return {}
    accounts = list(
        Account.objects.filter(
            organization_id=managers[0].organization_id,
            kind=Account.Kind.MANAGER,
            manager_id__in={m.user_id for m in managers},
        )
    )
    figures = credit_selectors.account_figures(accounts=accounts)
    by_scope = {(a.course_id, a.manager_id): figures[a.pk] for a in accounts}
    return {
        m.pk: by_scope.get((m.course_id, m.user_id), credit_selectors.NO_FIGURES) for m in managers
    }


@require_GET
@member_required("manager", "admin")
def my_courses(request: HttpRequest) -> HttpResponse:
    managed = list(
        CourseManager.objects.filter(
            organization=request.organization, user=request.user
        ).select_related("course")
    )
    figures = _manager_figures(managed)
    rows = [{"manager": m, "figures": figures[m.pk]} for m in managed]
    return render(request, "training/my_courses.html", {"rows": rows})


def _managed(request: HttpRequest, pk: int) -> CourseManager:
    # A manager sees only their own courses.
    return get_object_or_404(
        CourseManager.objects.select_related("course"),
        pk=pk,
        organization=request.organization,
        user=request.user,
    )


@require_GET
@member_required("manager", "admin")
def managed_course(request: HttpRequest, pk: int) -> HttpResponse:
    manager = _managed(request, pk)
    invitations = Assignment.objects.filter(
        organization=request.organization, manager=request.user, level__course=manager.course
    ).select_related("level")
    return render(
        request,
        "training/managed_course.html",
        {
            "manager": manager,
            "figures": _manager_figures([manager])[manager.pk],
            "levels": manager.course.levels.all(),
            "invitations": invitations,
            "token": uuid.uuid4(),
        },
    )


@require_POST
@member_required("manager", "admin")
def invite(request: HttpRequest, pk: int) -> HttpResponse:
    manager = _managed(request, pk)
    level = Level.objects.filter(pk=_number(request, "level"), course=manager.course).first()
    if level is None:
        messages.error(request, "Choose a level of this course.")
        return redirect("training:managed_course", manager.pk)
    try:
        sent, rejected = assignments.invite(
            manager=manager,
            level=level,
            text=request.POST.get("emails", ""),
            token=request.POST.get("token", "") or str(uuid.uuid4()),
        )
    except InsufficientCredits as short:
        messages.error(
            request,
            f"{short} No invitation was sent: ask your admin to assign you more credits.",
        )
    except assignments.AllocationRefused as refusal:
        messages.error(request, str(refusal))
    else:
        if sent:
            messages.success(request, f"Invited {len(sent)}.")
        for row, reason in rejected:
            messages.warning(request, f"Not invited: “{row}” ({reason}).")
    return redirect("training:managed_course", manager.pk)


def _my_invitation(request: HttpRequest, pk: int) -> Assignment:
    return get_object_or_404(
        Assignment, pk=pk, organization=request.organization, manager=request.user
    )


def _back_to_course(request: HttpRequest, invitation: Assignment) -> HttpResponse:
    manager = CourseManager.objects.filter(
        organization=request.organization, user=request.user, course=invitation.level.course
    ).first()
    if manager is None:
        return redirect("training:my_courses")
    return redirect("training:managed_course", manager.pk)


@require_POST
@member_required("manager", "admin")
def invitation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _my_invitation(request, pk)
    try:
        assignments.invite_cancel(assignment=invitation, actor=request.user)
        messages.success(request, f"Invitation of {invitation.email} cancelled; credit released.")
    except (assignments.AllocationRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    return _back_to_course(request, invitation)


@require_POST
@member_required("manager", "admin")
def invitation_reinvite(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _my_invitation(request, pk)
    try:
        assignments.reinvite(assignment=invitation)
        messages.success(request, f"{invitation.email} invited again with a new link.")
    except assignments.AllocationRefused as refusal:
        messages.error(request, str(refusal))
    return _back_to_course(request, invitation)


@require_http_methods(["GET", "POST"])
def accept(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """The invitation link. Refusals (used, cancelled, expired, replaced, another address)
    get a page that says which, never a second charge."""
    invitation = Assignment.objects.filter(token=token).select_related("level__course").first()
    context = {"invitation": invitation, "errors": []}
    if invitation is None:
        context["refusal"] = (
            "This invitation link is no longer valid: it was replaced by a newer one or never "
            "existed. Use the latest email you received."
        )
        return render(request, "training/accept.html", context, status=410)
    if request.method == "POST":
        user = request.user if request.user.is_authenticated else None
        if user is None:
            if User.objects.filter(email__iexact=invitation.email).exists():
                return redirect(f"{reverse('login')}?next={request.path}")
            password = request.POST.get("password", "")
            try:
                validate_password(password, User(email=invitation.email))
            except ValidationError as error:
                context["errors"] = error.messages
                return render(request, "training/accept.html", context, status=400)
            user = User.objects.create_user(email=invitation.email, password=password)
        try:
            accepted = assignments.invite_accept(token=token, user=user)
        except assignments.AllocationRefused as refusal:
            context["refusal"] = str(refusal)
            return render(request, "training/accept.html", context, status=409)
        if not request.user.is_authenticated:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session["organization_id"] = accepted.organization_id
        messages.success(request, f"You are enrolled in {accepted.level}.")
        return redirect("training:my_training")
    context["has_account"] = User.objects.filter(email__iexact=invitation.email).exists()
    return render(request, "training/accept.html", context)


@require_POST
@member_required()
def assignment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(
        Assignment, pk=pk, organization=request.organization, user=request.user
    )
    progress = _number(request, "progress")
    if item.status == Assignment.Status.ACCEPTED:
        item.start()
    if item.status == Assignment.Status.STARTED and progress:
        item.progress = max(item.progress, min(progress, 100))
        if item.progress == 100:
            item.finish()
    item.save(update_fields=["status", "progress"])
    return redirect("training:my_training")
