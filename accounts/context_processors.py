from django.http import HttpRequest
from django.utils import timezone

from catalog.selectors import cart_seats

from .navigation import navigation_for


def organization(request: HttpRequest) -> dict:
    membership = getattr(request, "membership", None)
    cart_count = 0
    if membership is not None and membership.is_admin:
        cart_count = cart_seats(organization=request.organization, user=request.user)
    return {
        "cart_count": cart_count,
        "current_organization": getattr(request, "organization", None),
        "current_membership": membership,
        "memberships": getattr(request, "memberships", []),
        "navigation": navigation_for(membership.role if membership else None),
        # The zone the middleware activated: the user's own, else the organization's.
        "display_time_zone": timezone.get_current_timezone_name(),
    }
