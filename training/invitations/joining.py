"""A training plan's join link, and the learner account both kinds of link create."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from accounts.models import Membership, User
from training.common import TrainingRefused
from training.models import Participant, TrainingPlan


class AccountExists(Exception):
    """The address already has an account (perhaps created a moment ago by another tab):
    the person signs in, then uses the link again."""


UNKNOWN_LINK = "This invitation link is not valid: use the link from your email."


class JoinRefused(TrainingRefused):
    """A plan link that cannot be used (any more). The message is fit to show; `reason` is
    one of unknown, removed, cancelled, completed, not_yours, used; `sign_in` says whether
    signing in is the way forward."""

    def __init__(self, message: str, *, reason: str, sign_in: bool = False):
        super().__init__(message)
        self.reason = reason
        self.sign_in = sign_in


def learner_account_create(*, email: str, password: str) -> User:
    """A login for an invited address. Call it inside the transaction that also grants what
    the link is for, so that a later refusal rolls the account back with the rest.

    Two requests for one address at once (two tabs, or a plan and a course invitation): the
    second waits on the unique index until the first commits, then gets AccountExists rather
    than an IntegrityError."""
    if User.objects.filter(email__iexact=email).exists():
        raise AccountExists(email)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction stays usable
            return User.objects.create_user(email=email, password=password)
    except IntegrityError:
        raise AccountExists(email) from None


def participant_for_link(*, token: uuid.UUID, user: User | None) -> Participant:
    """The participant a plan link names, if `user` (None: not signed in) may still use it.
    Reads only: what the page shows before anything is posted."""
    person = (
        Participant.objects.select_related("plan__organization").filter(invite_token=token).first()
    )
    if person is None:
        raise JoinRefused(UNKNOWN_LINK, reason="unknown")
    _check_open(person, user)
    return person


def already_joined(person: Participant, user: User | None) -> bool:
    return user is not None and person.user_id == user.pk


def _check_open(person: Participant, user: User | None) -> None:
    """Refuses a link that is dead, or that names someone else. The person who already
    joined passes: opening the link again is harmless."""
    plan = person.plan
    if person.removed_at is not None:
        raise JoinRefused(
            f"You were removed from the training plan {plan.name}, so this link no longer "
            f"works. Ask {plan.organization.name}'s admin if this is a mistake.",
            reason="removed",
        )
    if plan.status == TrainingPlan.Status.CANCELLED:
        raise JoinRefused(
            f"The training plan {plan.name} was cancelled: there is nothing to join.",
            reason="cancelled",
        )
    if plan.status == TrainingPlan.Status.COMPLETED:
        raise JoinRefused(
            f"The training plan {plan.name} is completed and takes no one new. Ask "
            f"{plan.organization.name}'s admin for a new invitation.",
            reason="completed",
        )
    if user is not None and user.email.lower() != person.email.lower():
        raise JoinRefused(
            f"This invitation is for {person.email}, but you are signed in as {user.email}. "
            "Log out, then open the link again.",
            reason="not_yours",
        )
    if person.user_id is not None and not already_joined(person, user):
        raise JoinRefused(
            f"This invitation was already accepted. Sign in as {person.email} to see your "
            "training.",
            reason="used",
            sign_in=True,
        )


def plan_join(*, token: uuid.UUID, user: User | None, password: str = "") -> Participant:
    """The participant takes their place in the plan: as the signed-in `user` (who must be the
    invited address), or as a new account with `password`. Returns the participant, its
    `user` set. Raises JoinRefused, or AccountExists when an account must sign in first."""
    with transaction.atomic():
        plan_id = (
            Participant.objects.filter(invite_token=token).values_list("plan_id", flat=True).first()
        )
        if plan_id is None:
            raise JoinRefused(UNKNOWN_LINK, reason="unknown")
        # The plan row first, as every change to a plan's people takes it: a cancellation or
        # a removal running now happens wholly before this join (which then refuses) or after.
        TrainingPlan.objects.select_for_update(of=("self",)).get(pk=plan_id)
        person = (
            Participant.objects.select_for_update(of=("self",))
            .select_related("plan__organization")
            .get(invite_token=token)
        )
        # Checked again under the locks: a second tab waits here, then finds it joined.
        _check_open(person, user)
        if already_joined(person, user):
            return person
        if user is None:
            user = learner_account_create(email=person.email, password=password)
        Membership.objects.get_or_create(
            user=user, organization=person.plan.organization, defaults={"role": "learner"}
        )
        Participant.objects.filter(pk=person.pk).update(user=user)
        person.user = user
    return person
