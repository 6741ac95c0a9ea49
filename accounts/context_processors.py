from django.http import HttpRequest
from django.utils import timezone

from .navigation import navigation_for


def organization(request: HttpRequest) -> dict:
    membership = getattr(request, "membership", None)
    return {
        "current_organization": getattr(request, "organization", None),
        "current_membership": membership,
        "memberships": getattr(request, "memberships", []),
        "navigation": navigation_for(membership.role if membership else None),
        # The zone the middleware activated: the user's own, else the organization's.
        "display_time_zone": timezone.get_current_timezone_name(),
    }
