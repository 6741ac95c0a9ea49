"""Resolve the organization every request acts on, and the zone its times are shown in."""

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .selectors import memberships_for_user

SESSION_KEY = "organization_id"


class CurrentOrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.organization = None
        request.membership = None
        request.memberships = []
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            memberships = list(memberships_for_user(user=user))
            request.memberships = memberships
            chosen = request.session.get(SESSION_KEY)
            # A membership removed since the last request falls back to the first one left.
            current = next((m for m in memberships if m.organization_id == chosen), None)
            current = current or (memberships[0] if memberships else None)
            if current is not None:
                request.membership = current
                request.organization = current.organization
                if chosen != current.organization_id:
                    request.session[SESSION_KEY] = current.organization_id
            zone = user.time_zone or (current.organization.time_zone if current else "UTC")
            timezone.activate(zoneinfo.ZoneInfo(zone))
        else:
            timezone.deactivate()
        return self.get_response(request)
