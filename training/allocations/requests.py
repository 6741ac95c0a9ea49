"""Managers asking the admins for credits (a request per course they manage), and the admins'
answer: approved, the credits move pool → course → manager as ledger transfers; declined,
nothing moves. Both sides are told by email (the outbox, in the answer's transaction).

A request is answered once. The answer locks the request's row first and checks it is still
pending, then moves the credits (the ledger locks the accounts) and writes the answer, all in
one transaction: a second tab, a second admin or a retried POST finds it answered and is told
who answered it, with no second transfer. The transfers' idempotency keys name the request,
so even a replayed transaction could not move the credits twice."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organization, User
from credits import services as ledger
from credits.services import InsufficientCredits
from outbox.services import NewMessage, messages_enqueue, one_line
from training.common import TrainingRefused
from training.models import CourseManager, CreditRequest

from .services import figures, manager_account_of

REQUESTED = "training_credit_request"
ANSWERED = "training_credit_request_answered"


class RequestRefused(TrainingRefused):
    """A request that cannot be made or answered, with the reason to show."""


class RequestAnswered(RequestRefused):
    """The request was answered already (another tab, another admin)."""


def credit_request_create(
    *, manager: CourseManager, quantity: int, note: str, token: uuid.UUID
) -> CreditRequest:
    """The manager's request; the organization's admins are emailed. The same form posted
    twice (same token) is the same request."""
    again = _same_form(token, manager)
    if again is not None:
        return again
    _refuse_if_pending(manager)
    try:
        with transaction.atomic():
            request = CreditRequest.objects.create(
                organization=manager.organization,
                manager=manager,
                quantity=quantity,
                note=note,
                token=token,
            )
            messages_enqueue(messages=[_requested_message(request)])
    except IntegrityError:
        # Raced by the same form (token) or by another tab's request (one pending at most).
        again = _same_form(token, manager)
        if again is not None:
            return again
        _refuse_if_pending(manager)
        raise
    return request


def _same_form(token: uuid.UUID, manager: CourseManager) -> CreditRequest | None:
    """The request this form already made, if any; a token used for another course (a
    page copied, an edited form) is refused rather than taken for this one."""
    again = CreditRequest.objects.filter(token=token).first()
    if again is not None and again.manager_id != manager.pk:
        raise RequestRefused("This form was already used: reload the page and ask again.")
    return again


def _refuse_if_pending(manager: CourseManager) -> None:
    pending = CreditRequest.objects.filter(
        manager=manager, status=CreditRequest.Status.PENDING
    ).first()
    if pending is not None:
        raise RequestRefused(
            f"You already asked for {pending.quantity:,} credit"
            f"{'' if pending.quantity == 1 else 's'} for {manager.course}; an admin has not "
            "answered yet. You can ask again once they have."
        )


def credit_request_approve(
    *, request_id: int, organization: Organization, actor: User, note: str = ""
) -> CreditRequest:
    """Moves the credits to the manager: from the course's unassigned credits, topped up
    from the pool for what the course lacks. Refused, with nothing moved, when the pool
    cannot cover it."""
    with transaction.atomic():
        request = _pending(request_id, organization)
        manager = request.manager
        pool = ledger.pool_account(organization=organization)
        course = ledger.course_account(organization=organization, course=manager.course)
        mine = manager_account_of(manager)
        # All three accounts, in the ledger's order, before the two transfers (which would
        # otherwise lock pool and course, then course and manager: against an Assign that
        # locks manager and course, a deadlock). The course's figure is read under them.
        ledger.accounts_lock(accounts=[pool, course, mine])
        lacking = request.quantity - max(figures(account=course).available, 0)
        if lacking > 0:
            try:
                ledger.credits_transfer(
                    source=pool,
                    destination=course,
                    quantity=lacking,
                    idempotency_key=f"credit-request:{request.pk}:to-course",
                    actor=actor,
                )
            except InsufficientCredits as short:
                raise RequestRefused(
                    f"Not approved: the pool has {short.available:,} credit"
                    f"{'' if short.available == 1 else 's'} available and this request needs "
                    f"{short.shortfall:,} more. Add credits, then approve it; it stays pending."
                ) from short
        moved = ledger.credits_transfer(
            source=course,
            destination=mine,
            quantity=request.quantity,
            idempotency_key=f"credit-request:{request.pk}:to-manager",
            actor=actor,
        )
        _answer(request, CreditRequest.Status.APPROVED, actor, note, transfer=moved)
    return request


def credit_request_decline(
    *, request_id: int, organization: Organization, actor: User, note: str
) -> CreditRequest:
    with transaction.atomic():
        request = _pending(request_id, organization)
        _answer(request, CreditRequest.Status.DECLINED, actor, note)
    return request


def _pending(request_id: int, organization: Organization) -> CreditRequest:
    request = (
        CreditRequest.objects.select_for_update(of=("self",))
        .select_related("manager__course", "manager__user", "answered_by")
        .filter(pk=request_id, organization=organization)
        .first()
    )
    if request is None:
        raise RequestRefused("That request does not exist in this organization.")
    if request.status != CreditRequest.Status.PENDING:
        who = request.answered_by.email if request.answered_by else "an admin"
        raise RequestAnswered(
            f"This request was already {request.get_status_display().lower()} by {who}: "
            "nothing was changed."
        )
    return request


def _answer(request: CreditRequest, status: str, actor: User, note: str, transfer=None) -> None:
    request.status = status
    request.answered_at = timezone.now()
    request.answered_by = actor
    request.answer_note = note
    request.transfer = transfer
    request.save(update_fields=["status", "answered_at", "answered_by", "answer_note", "transfer"])
    messages_enqueue(messages=[_answered_message(request)])


def credit_requests_pending(*, organization: Organization) -> QuerySet[CreditRequest]:
    """The organization's requests waiting for an answer, oldest first (index
    credit_request_pending); callers slice it."""
    return (
        CreditRequest.objects.filter(organization=organization, status=CreditRequest.Status.PENDING)
        .select_related("manager__course", "manager__user")
        .order_by("created_at", "id")
    )


def _render(name: str, context: dict) -> str:
    return get_template(f"emails/{name}.txt").render(context).strip() + "\n"


def _requested_message(request: CreditRequest) -> NewMessage:
    manager = request.manager
    admins = list(
        Membership.objects.filter(
            organization=request.organization, role=Membership.Role.ADMIN
        ).values_list("user__email", flat=True)
    )
    return NewMessage(
        key=f"training.credit-request:{request.pk}",
        to=admins,
        subject=f"Credits requested for {one_line(manager.course.title)}",
        text=_render(
            "credit_request",
            {
                "request": request,
                "manager": manager.user.email,
                "course": manager.course.title,
                "link": settings.SITE_URL + reverse("dashboard"),
            },
        ),
        kind=REQUESTED,
        organization=request.organization,
    )


def _answered_message(request: CreditRequest) -> NewMessage:
    manager = request.manager
    return NewMessage(
        key=f"training.credit-request-answer:{request.pk}",
        to=manager.user.email,
        subject=f"Your request for {one_line(manager.course.title)}: "
        f"{request.get_status_display().lower()}",
        text=_render(
            "credit_request_answered",
            {
                "request": request,
                "course": manager.course.title,
                "link": settings.SITE_URL + reverse("training:managed_course", args=[manager.pk]),
            },
        ),
        kind=ANSWERED,
        organization=request.organization,
    )
