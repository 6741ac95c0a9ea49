from django.db.models import QuerySet

from .models import Membership, Organization, User


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("organization")


def organization_for_member(*, user: User, slug: str) -> Organization | None:
    """The organization with this slug, only if the user belongs to it."""
    return Organization.objects.filter(slug=slug, memberships__user=user).first()
