"""Support's two tools, used from the Django admin (credits/admin.py, accounts/admin.py):
extending a lot's expiry and granting goodwill credits. Each form asks for a reason and
carries a token, so a double submission or the Back button writes one ledger transaction;
the writes themselves are credits/services.py's (`lot_extend`, `goodwill_grant`)."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.models import Organization

from . import services
from .validity import day_start, usable_through

REASON_LENGTH = 500


class _SupportForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Shown in the organization's credit history.",
        error_messages={"required": "Give the reason: it is kept with the ledger entry."},
    )
    token = forms.UUIDField(widget=forms.HiddenInput)


class ExtendExpiryForm(_SupportForm):
    last_day = forms.DateField(
        label="New last usable day",
        help_text="In the organization's time zone; the lot is usable through the end of it.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_last_day(self) -> dt.date:
        day = self.cleaned_data["last_day"]
        if day > dt.date.today() + dt.timedelta(days=5 * 366):
            raise forms.ValidationError("Extend by at most five years.")
        return day


class GoodwillForm(_SupportForm):
    quantity = forms.IntegerField(
        label="Credits",
        min_value=1,
        max_value=100_000,
        error_messages={"max_value": "Grant at most 100,000 credits at a time."},
    )


class SupportToolsAdmin:
    """For the admins that offer support's tools: only to staff granted them (the actions
    ask `has_support_permission`; the services check the actor again)."""

    def has_support_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.SUPPORT_PERMISSION)


def _zone(organization: Organization) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(organization.time_zone)


def _one(model_admin, request, queryset, what: str):
    if queryset.count() != 1:
        model_admin.message_user(request, f"Choose one {what} at a time.", messages.ERROR)
        return None
    return queryset.get()


@admin.action(description="Extend the expiry (one lot, with a reason)", permissions=["support"])
def extend_expiry(model_admin, request: HttpRequest, queryset) -> HttpResponse | None:
    lot = _one(model_admin, request, queryset.select_related("organization"), "lot")
    if lot is None:
        return None
    zone = _zone(lot.organization)
    form = ExtendExpiryForm(
        request.POST if "apply" in request.POST else None,
        initial={"token": uuid.uuid4()},
    )
    if "apply" in request.POST and form.is_valid():
        try:
            services.lot_extend(
                lot=lot,
                expires_at=day_start(form.cleaned_data["last_day"] + dt.timedelta(days=1), zone),
                reason=form.cleaned_data["reason"],
                actor=request.user,
                idempotency_key=f"support-extend:{form.cleaned_data['token']}",
            )
        except services.CreditsError as refusal:
            model_admin.message_user(request, str(refusal), messages.ERROR)
        else:
            lot.refresh_from_db()
            model_admin.message_user(
                request, f"Lot {lot.pk} is now {usable_through(lot.expires_at, zone)}."
            )
        return redirect(request.get_full_path())
    return render(
        request,
        "admin/credits/support_form.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"Extend the expiry of lot {lot.pk}",
            "intro": (
                f"{lot.organization}: {lot.quantity:,} credits, "
                f"{usable_through(lot.expires_at, zone) if lot.expires_at else 'never expires'}"
                ". A later day only; expired and revoked lots cannot be extended."
            ),
            "form": form,
            "action": "extend_expiry",
            "selected": lot.pk,
            "button": "Extend the expiry",
        },
    )


@admin.action(description="Grant goodwill credits (one organization)", permissions=["support"])
def grant_goodwill(model_admin, request: HttpRequest, queryset) -> HttpResponse | None:
    organization = _one(model_admin, request, queryset, "organization")
    if organization is None:
        return None
    form = GoodwillForm(
        request.POST if "apply" in request.POST else None,
        initial={"token": uuid.uuid4()},
    )
    if "apply" in request.POST and form.is_valid():
        try:
            lot = services.goodwill_grant(
                organization=organization,
                quantity=form.cleaned_data["quantity"],
                reason=form.cleaned_data["reason"],
                actor=request.user,
                idempotency_key=f"support-goodwill:{form.cleaned_data['token']}",
            )
        except services.CreditsError as refusal:
            model_admin.message_user(request, str(refusal), messages.ERROR)
        else:
            zone = _zone(organization)
            validity = usable_through(lot.expires_at, zone) if lot.expires_at else "never expires"
            model_admin.message_user(
                request,
                f"{lot.quantity:,} goodwill credits granted to {organization} (lot {lot.pk}, "
                f"{validity}).",
            )
        return redirect(request.get_full_path())
    return render(
        request,
        "admin/credits/support_form.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"Grant goodwill credits to {organization}",
            "intro": (
                "A lot of its own in the organization's pool, at no cost, valid for the "
                "organization's usual validity from today."
            ),
            "form": form,
            "action": "grant_goodwill",
            "selected": organization.pk,
            "button": "Grant the credits",
        },
    )
