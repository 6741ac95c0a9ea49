"""My courses (managers) and the two kinds of invitation link (learners): a manager's
invitation to a course, and a training plan's join link."""

import uuid

from django.contrib import messages
from django.contrib.auth import login
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.models import User
from credits.services import CreditsError, InsufficientCredits
from training.common import form_errors_shown
from training.models import Assignment, CourseManager, CreditRequest, Participant
from training.plans.turnover import NOT_STARTED_AFTER

from . import joining, selectors
from . import services as invitations
from .forms import AcceptForm, InviteForm, LearnersListForm, ReplaceInvitationForm, ResendForm
from .joining import AccountExists

# Invitations per page of a manager's course: a course taught for years is pages, newest
# first, not one table of every learner ever invited.
INVITATIONS_PER_PAGE = 50


def _learners_list(data) -> tuple[int, bool]:
    """(page, only the invitations not started for two weeks); anything odd: page 1, all."""
    form = LearnersListForm(data)
    if not form.is_valid():
        return 1, False
    return form.cleaned_data["page"] or 1, form.cleaned_data["stale"]


@never_cache
@require_GET
@member_required("manager", "admin")
def my_courses(request: HttpRequest) -> HttpResponse:
    rows = selectors.managed_courses(organization=request.organization, user=request.user)
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
    # In the order of the index assignment_manager_newest; the id breaks ties between pages.
    invitations = (
        Assignment.objects.filter(
            organization=request.organization, manager=request.user, course=manager.course
        )
        .select_related("level")
        .order_by("-created_at", "-pk")
    )
    number, stale = _learners_list(request.GET)
    if stale:
        # Not started for two weeks: invitations still waiting 14 days after being sent.
        invitations = invitations.filter(
            status=Assignment.Status.INVITED,
            created_at__lte=timezone.now() - NOT_STARTED_AFTER,
        )
    page = Paginator(invitations, INVITATIONS_PER_PAGE).get_page(number)
    return render(
        request,
        "training/managed_course.html",
        {
            "manager": manager,
            "figures": selectors.manager_figures([manager])[manager.pk],
            "levels": manager.course.levels.all(),
            "invitations": page,
            "stale": stale,
            "token": uuid.uuid4(),
            "pending_request": CreditRequest.objects.filter(
                manager=manager, status=CreditRequest.Status.PENDING
            ).first(),
            "last_answer": CreditRequest.objects.filter(manager=manager)
            .exclude(status=CreditRequest.Status.PENDING)
            .order_by("-answered_at")
            .first(),
            "request_token": uuid.uuid4(),
        },
    )


@require_POST
@member_required("manager", "admin")
def invite(request: HttpRequest, pk: int) -> HttpResponse:
    manager = _managed(request, pk)
    form = InviteForm(request.POST, course=manager.course)
    if not form.is_valid():
        form_errors_shown(request, form)
        return redirect("training:managed_course", manager.pk)
    try:
        result = invitations.invite(
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
    except (invitations.InvitationRefused, CreditsError) as refusal:
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
    # Back to the page of the list the manager acted from.
    url = reverse("training:managed_course", args=[manager.pk])
    query = QueryDict(mutable=True)
    number, stale = _learners_list(request.POST)
    if stale:
        query["stale"] = "1"
    if number > 1:
        query["page"] = str(number)
    return redirect(f"{url}?{query.urlencode()}" if query else url)


@require_POST
@member_required("manager", "admin")
def invitation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _my_invitation(request, pk)
    try:
        invitations.invite_cancel(assignment=invitation, actor=request.user)
        messages.success(request, f"Invitation of {invitation.email} cancelled; credit released.")
    except (invitations.InvitationRefused, CreditsError) as refusal:
        messages.error(request, str(refusal))
    return _back_to_course(request, invitation)


@require_POST
@member_required("manager", "admin")
def invitation_reinvite(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _my_invitation(request, pk)
    form = ResendForm(request.POST)
    form_token = str(form.cleaned_data["token"] or "") if form.is_valid() else ""
    try:
        invitations.reinvite(assignment=invitation, form_token=form_token)
        messages.success(request, f"{invitation.email} invited again with a new link.")
    except invitations.InvitationRefused as refusal:
        messages.error(request, str(refusal))
    return _back_to_course(request, invitation)


@require_POST
@member_required("manager", "admin")
def invitation_replace(request: HttpRequest, pk: int) -> HttpResponse:
    """Give a pending invitation, with its held credit, to someone else."""
    invitation = _my_invitation(request, pk)
    form = ReplaceInvitationForm(request.POST)
    if not form.is_valid():
        form_errors_shown(request, form)
        return _back_to_course(request, invitation)
    old = invitation.email
    try:
        moved = invitations.invitation_replace(
            assignment=invitation,
            email=form.cleaned_data["email"],
            expected_email=form.cleaned_data["expected"],
        )
    except invitations.InvitationRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(
            request,
            f"{old}'s invitation is now {moved.email}'s, with the same credit held; "
            f"{old}'s link no longer works.",
        )
    return _back_to_course(request, invitation)


def _accept_page(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    return render(request, "training/accept.html", context, status=status)


def _refused(request: HttpRequest, refusal: Exception, status: int) -> HttpResponse:
    """A page that says why the link cannot be used, and nothing to fill in."""
    sign_in = getattr(refusal, "sign_in", False) and not request.user.is_authenticated
    context = {"refusal": str(refusal), "sign_in": sign_in}
    return _accept_page(request, context, status)


def _refusal_status(refusal: invitations.InvitationRefused) -> int:
    if isinstance(refusal, invitations.InvitationNotYours):
        return 403
    if isinstance(refusal, invitations.InvitationDead) and refusal.reason != "used":
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
        invitation = invitations.invitation_for_link(token=token, user=user)
    except invitations.InvitationRefused as refusal:
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
        accepted = invitations.invite_accept(
            token=token, user=user, password=form.cleaned_data["password"]
        )
    except AccountExists:
        # Created a moment ago (another tab, another invitation): it signs in, then accepts.
        messages.info(request, f"{invitation.email} has an account now: log in to accept.")
        return _login_first(request)
    except invitations.InvitationRefused as refusal:  # InvitationShort among them
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
