from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_ratelimit.core import is_ratelimited

from credits import selectors as credit_selectors
from credits.forecast import forecast

from .decorators import member_required
from .middleware import SESSION_KEY
from .selectors import organization_for_member


def _login_email(group: str, request: HttpRequest) -> str:
    return request.POST.get("username", "").strip().lower()


def login_view(request: HttpRequest) -> HttpResponse:
    """Django's login, with attempts counted in Redis per address and per email address."""
    if request.method == "POST":
        limited = is_ratelimited(
            request,
            group="login-ip",
            key="ip",
            rate=settings.LOGIN_RATE_PER_IP,
            method="POST",
            increment=True,
        )
        limited |= is_ratelimited(
            request,
            group="login-email",
            key=_login_email,
            rate=settings.LOGIN_RATE_PER_EMAIL,
            method="POST",
            increment=True,
        )
        if limited:
            return render(request, "429.html", status=429)
    return auth_views.LoginView.as_view(redirect_authenticated_user=True)(request)


@member_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {}
    if request.membership.is_admin:
        organization = request.organization
        balance = credit_selectors.organization_balance(organization=organization)
        context = {
            "balance": balance,
            "low_balance": balance.available < organization.low_balance_threshold,
            "forecast": forecast(organization=organization),
        }
    return render(request, "accounts/dashboard.html", context)


@require_POST
@member_required()
def switch_organization(request: HttpRequest, slug: str) -> HttpResponse:
    organization = organization_for_member(user=request.user, slug=slug)
    if organization is None:
        # Not "forbidden": to an outsider the organization simply does not exist.
        raise Http404("No such organization.")
    request.session[SESSION_KEY] = organization.pk
    messages.success(request, f"You are now working in {organization.name}.")
    # Pages act on the current organization, so the old page's object may not exist here.
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = ""
    return redirect(target or "dashboard")
