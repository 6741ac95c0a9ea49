"""Assign credits (admins), My courses (managers), accepting an invitation (learners)."""

import uuid

from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import admin_required, member_required
from accounts.models import Membership, User
from catalog.models import Course, Level
from credits import selectors as credit_selectors
from credits.models import Account
from credits.services import CreditsError, InsufficientCredits

from . import assignments
from .forms import AcceptForm, AllocationForm, InviteForm, ProgressForm
from .joining import AccountExists
from .models import Assignment, CourseManager


@never_cache
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
    form = AllocationForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("training:allocations")
    data = form.cleaned_data
    action, quantity = data["action"], data["quantity"]
    # Without a token (an old page), each post is its own request.
    key = f"ui:{data['token'] or uuid.uuid4()}"
    try:
        if action in ("allocate", "release"):
            course = get_object_or_404(Course, pk=data["course"])
            do = assignments.course_allocate if action == "allocate" else assignments.course_release
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
            user = get_object_or_404(User, pk=data["user"], memberships__organization=organization)
            assignments.manager_register(organization=organization, course=course, user=user)
            messages.success(request, f"{user.email} now manages {course}.")
        elif action in ("assign", "take_back"):
            manager = get_object_or_404(
                CourseManager, pk=data["manager"], organization=organization
            )
            do = assignments.manager_assign if action == "assign" else assignments.manager_take_back
            do(manager=manager, quantity=quantity, actor=request.user, key=key)
            messages.success(
                request,
                f"{quantity:,} credit{pluralize(quantity)} moved for {manager.user.email}.",
            )
        else:  # enroll
            user = get_object_or_404(User, pk=data["user"], memberships__organization=organization)
            level = get_object_or_404(Level, pk=data["level"])
            assignments.manual_enroll(
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


@never_cache
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


@never_cache
@require_GET
@member_required("manager", "admin")
def managed_course(request: HttpRequest, pk: int) -> HttpResponse:
    manager = _managed(request, pk)
    invitations = Assignment.objects.filter(
        organization=request.organization, manager=request.user, course=manager.course
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
    form = InviteForm(request.POST, course=manager.course)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("training:managed_course", manager.pk)
    try:
        result = assignments.invite(
            manager=manager,
            level=form.cleaned_data["level"],
            text=form.cleaned_data["emails"],
            token=str(form.cleaned_data["token"] or uuid.uuid4()),
        )
    except InsufficientCredits as short:
        messages.error(
            request,
            f"{short} No invitation was sent: ask your admin to assign you more credits.",
        )
    except (assignments.AllocationRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    else:
        if result.sent:
            messages.success(request, f"Invited {len(result.sent)}.")
        for invitation in result.resent:
            messages.info(
                request,
                f"{invitation.email} already had a pending invitation to {invitation.level}: "
                "it was sent again with a new link; no extra credit is held.",
            )
        for row, reason in result.rejected:
            messages.warning(request, f"Not invited: “{row}” ({reason}).")
    return redirect("training:managed_course", manager.pk)


def _my_invitation(request: HttpRequest, pk: int) -> Assignment:
    return get_object_or_404(
        Assignment, pk=pk, organization=request.organization, manager=request.user
    )


def _back_to_course(request: HttpRequest, invitation: Assignment) -> HttpResponse:
    manager = CourseManager.objects.filter(
        organization=request.organization, user=request.user, course_id=invitation.course_id
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


def _accept_page(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    return render(request, "training/accept.html", context, status=status)


def _refused(request: HttpRequest, refusal: Exception, status: int) -> HttpResponse:
    """A page that says why the link cannot be used, and nothing to fill in."""
    sign_in = getattr(refusal, "sign_in", False) and not request.user.is_authenticated
    context = {"refusal": str(refusal), "sign_in": sign_in}
    return _accept_page(request, context, status)


def _refusal_status(refusal: assignments.AllocationRefused) -> int:
    if isinstance(refusal, assignments.InvitationNotYours):
        return 403
    if isinstance(refusal, assignments.InvitationDead) and refusal.reason != "used":
        return 410  # the link is gone for good
    return 409


def _login_first(request: HttpRequest) -> HttpResponse:
    return redirect(f"{reverse('login')}?next={request.path}")


@require_http_methods(["GET", "POST"])
def accept(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """The invitation link. A link that can no longer be used (replaced, cancelled, expired,
    already used, someone else's) gets a page that says which and asks for nothing; accepting
    creates the account, the membership and the charge together or not at all."""
    user = request.user if request.user.is_authenticated else None
    try:
        invitation = assignments.invitation_for_link(token=token, user=user)
    except assignments.AllocationRefused as refusal:
        return _refused(request, refusal, _refusal_status(refusal))
    if invitation.status != Assignment.Status.INVITED:  # this very user accepted it already
        messages.info(request, f"You are already enrolled in {invitation.level}.")
        return _enrolled(request, invitation)
    has_account = user is None and User.objects.filter(email__iexact=invitation.email).exists()
    form = AcceptForm(
        request.POST if request.method == "POST" else None,
        email=invitation.email,
        needs_password=user is None and not has_account,
    )
    context = {"invitation": invitation, "has_account": has_account, "form": form}
    if request.method == "GET":
        return _accept_page(request, context)
    if has_account:
        return _login_first(request)
    if not form.is_valid():
        return _accept_page(request, context, status=400)
    try:
        accepted = assignments.invite_accept(
            token=token, user=user, password=form.cleaned_data["password"]
        )
    except AccountExists:
        # Created a moment ago (another tab, another invitation): it signs in, then accepts.
        messages.info(request, f"{invitation.email} has an account now: log in to accept.")
        return _login_first(request)
    except assignments.AllocationRefused as refusal:  # InvitationShort among them
        return _refused(request, refusal, _refusal_status(refusal))
    except CreditsError as refusal:
        return _refused(request, refusal, 409)
    if user is None:
        login(request, accepted.user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, f"You are enrolled in {accepted.level}.")
    return _enrolled(request, accepted)


def _enrolled(request: HttpRequest, invitation: Assignment) -> HttpResponse:
    request.session["organization_id"] = invitation.organization_id
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
    progress = form.cleaned_data["progress"]
    if item.status == Assignment.Status.ACCEPTED:
        item.start()
    if item.status == Assignment.Status.STARTED and progress:
        item.progress = max(item.progress, min(progress, 100))
        if item.progress == 100:
            item.finish()
    item.save(update_fields=["status", "progress"])
    return redirect("training:my_training")
