from django import forms
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from billing.models import AutoTopUp
from credits import forecast as credit_forecast
from credits import selectors as credit_selectors
from training.allocations.requests import credit_requests_pending
from training.invitations.selectors import managed_courses
from training.learner import selectors as learner_selectors

from . import ratelimits
from .decorators import member_required
from .middleware import SESSION_KEY
from .models import Membership
from .selectors import organization_for_member

# Managers' pending requests for credits listed on the admins' dashboard.
REQUESTS_SHOWN = 10


def login_view(request: HttpRequest) -> HttpResponse:
    """Django's login, with attempts counted in Redis per address and per email address."""
    if request.method == "POST" and ratelimits.exceeded(request, ratelimits.LOGIN):
        return render(request, "429.html", status=429)
    return auth_views.LoginView.as_view(redirect_authenticated_user=True)(request)


def admin_login_view(request: HttpRequest) -> HttpResponse:
    """The Django admin's login behind the site login's counters: a staff password opens
    every organization, so it gets at least the same protection."""
    if request.method == "POST" and ratelimits.exceeded(request, ratelimits.LOGIN):
        return render(request, "429.html", status=429)
    return admin.site.login(request)


def password_reset_view(request: HttpRequest) -> HttpResponse:
    """Django's password reset, with requests counted per address and per email address so
    that nobody can flood an inbox with reset mail."""
    if request.method == "POST" and ratelimits.exceeded(request, ratelimits.PASSWORD_RESET):
        # The answer every request gets, known address or not, only without the mail: the
        # counters never look at accounts, so being limited tells nothing about one.
        return redirect("password_reset_done")
    return auth_views.PasswordResetView.as_view()(request)


@member_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {}
    if request.membership.is_admin:
        organization = request.organization
        balance = credit_selectors.organization_balance(organization=organization)
        # Beat computes the forecast hourly; the page reads what it stored. Before the
        # first run the page says it is being prepared and asks for one refresh.
        forecast = credit_forecast.stored_forecast(organization=organization)
        if forecast is None:
            credit_forecast.forecast_refresh_request(organization_id=organization.pk)
        # Managers' requests for credits, oldest first: a few rows, and a count past them.
        waiting = list(credit_requests_pending(organization=organization)[: REQUESTS_SHOWN + 1])
        context = {
            "balance": balance,
            "low_balance": balance.available < organization.low_balance_threshold,
            "forecast": forecast,
            "auto_top_up_paused": AutoTopUp.objects.filter(
                organization=organization, status=AutoTopUp.Status.PAUSED
            ).first(),
            "credit_requests": waiting[:REQUESTS_SHOWN],
            "more_credit_requests": len(waiting) > REQUESTS_SHOWN,
        }
    elif request.membership.role == Membership.Role.MANAGER:
        context = {"managed": managed_courses(organization=request.organization, user=request.user)}
    else:
        # A learner's next steps: what to start, what is under way (a handful of rows).
        mine = {"organization": request.organization, "user": request.user}
        context = {
            "learning": [
                *learner_selectors.my_enrollments(**mine),
                *learner_selectors.my_courses(**mine),
            ]
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
    form = NextForm(request.POST)
    target = form.cleaned_data["next"] if form.is_valid() else ""
    # Only a path of this site: a bare word would be taken for a view name by redirect().
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}
    ):
        return redirect("dashboard")
    return HttpResponseRedirect(target)


class NextForm(forms.Form):
    next = forms.CharField(required=False, max_length=500)
