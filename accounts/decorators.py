from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Membership


def member_required(*roles: str) -> Callable:
    """Login, a membership in the current organization, and (if given) one of these roles.

    A signed-in user with no organization gets a page that says so instead of a 403:
    there is nothing they did wrong and nothing to see yet.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.membership is None:
                return render(request, "accounts/no_organization.html", status=403)
            if roles and request.membership.role not in roles:
                raise PermissionDenied("Your role in this organization does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


admin_required = member_required(Membership.Role.ADMIN)
