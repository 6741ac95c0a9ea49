"""The simulated checkout: a stand-in for Stripe's hosted pages on a machine with no Stripe
key (DEBUG only). "Pay" sends the events Stripe would send, signed with this install's own
random secret (stripe_gateway.simulated_webhook_secret), to the real webhook endpoint, so
the very same code fulfils them."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid

import stripe
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.decorators import admin_required

from . import forms, stripe_gateway
from .models import AutoTopUp, Purchase, Subscription, SubscriptionPlan

UNREACHABLE = (
    "The simulated payment could not reach this site's webhook, so nothing was paid. "
    "Try again in a moment."
)

# The ids stripe_gateway makes for simulated sessions; anything else names no session (and a
# NUL byte or a 10 kB id must not reach the database).
_SIMULATED_SUBSCRIPTION = re.compile(r"cs_sim_sub_([0-9]{1,18})_([0-9a-f]{32})")
_SIMULATED_PURCHASE = re.compile(r"cs_sim_[0-9A-Za-z_]{1,200}")


@never_cache
@require_http_methods(["GET", "POST"])
@admin_required
def simulated_checkout(request: HttpRequest, session_id: str) -> HttpResponse:
    if not stripe_gateway.simulated():
        raise Http404("There is no simulated checkout on this site.")
    if session_id.startswith("cs_sim_sub_"):
        match = _SIMULATED_SUBSCRIPTION.fullmatch(session_id)
        if match is None:
            raise Http404("No such checkout session.")
        plan_id, token = match.groups()
        plan = get_object_or_404(SubscriptionPlan, pk=int(plan_id), active=True)
        item, events = None, _subscription_events(request, session_id, plan, token)
        back = "billing:overview"
    else:
        if _SIMULATED_PURCHASE.fullmatch(session_id) is None:
            raise Http404("No such checkout session.")
        item = get_object_or_404(
            Purchase, checkout_session_id=session_id, organization=request.organization
        )
        plan, events = None, [_purchase_event(item)]
        back = "billing:add_credits"
    if request.method == "GET":
        return render(request, "billing/simulated_checkout.html", {"purchase": item, "plan": plan})
    choice = forms.SimulatedPaymentForm(request.POST)
    action = choice.cleaned_data["action"] if choice.is_valid() else ""
    if action == "cancel":
        messages.info(request, "Payment cancelled. Nothing was charged.")
        return redirect(back)
    if action != "pay":
        messages.error(request, "Choose Pay or Cancel.")
        return redirect(request.path)
    try:
        for event in events:
            _post_signed(request, event)
    except OSError:
        # The events go to this site's own webhook endpoint: if it cannot be reached (a
        # proxy in the way, a name that does not resolve), nothing was paid.
        messages.error(request, UNREACHABLE)
        return redirect(back)
    if item is None:
        messages.success(request, f"Subscribed to {plan}.")
        return redirect("billing:overview")
    return redirect("billing:purchase", item.pk)


def upgrade_paid(request: HttpRequest, subscription: Subscription, plan: SubscriptionPlan):
    """What Stripe sends once an upgrade's proration is paid: here, at once, for the whole
    difference in price (as if upgraded on the period's first day)."""
    old = subscription.plan
    metadata = {"organization_id": str(subscription.organization_id), "plan_id": str(plan.pk)}
    now = int(time.time())
    _post_signed(
        request,
        _event(
            "invoice.paid",
            {
                "id": f"in_sim_upgrade_{uuid.uuid4().hex}",
                "object": "invoice",
                "billing_reason": "subscription_update",
                "currency": plan.currency.lower(),
                "amount_paid": max(plan.price_minor - old.price_minor, 0),
                "parent": {
                    "subscription_details": {
                        "subscription": subscription.stripe_subscription_id,
                        "metadata": metadata,
                    }
                },
                "status_transitions": {"paid_at": now},
                "lines": {"data": []},
            },
        ),
    )


def _event(type_: str, obj: dict) -> dict:
    return {
        "id": f"evt_sim_{uuid.uuid4().hex}",
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def _purchase_event(item: Purchase) -> dict:
    return _event(
        "checkout.session.completed",
        {
            "id": item.checkout_session_id,
            "object": "checkout.session",
            "mode": "payment",
            "payment_status": "paid",
            "status": "complete",
            "client_reference_id": str(item.pk),
            "metadata": {
                "organization_id": str(item.organization_id),
                "purchase_id": str(item.pk),
            },
            "payment_intent": f"pi_sim_{item.pk}",
            "amount_total": item.amount_minor,
            "currency": item.currency.lower(),
        },
    )


def _subscription_events(
    request: HttpRequest, session_id: str, plan: SubscriptionPlan, token: str
) -> list[dict]:
    metadata = {"organization_id": str(request.organization.pk), "plan_id": str(plan.pk)}
    subscription_id = f"sub_sim_{token}"
    start = int(time.time())
    end = start + (365 if plan.interval == "year" else 30) * 86400
    return [
        _event(
            "checkout.session.completed",
            {
                "id": session_id,
                "object": "checkout.session",
                "mode": "subscription",
                "subscription": subscription_id,
                "metadata": metadata,
            },
        ),
        _event(
            "invoice.paid",
            {
                "id": f"in_sim_{token}",
                "object": "invoice",
                "billing_reason": "subscription_create",
                "currency": plan.currency.lower(),
                "amount_paid": plan.price_minor,
                "subscription": subscription_id,
                "subscription_details": {"metadata": metadata},
                "status_transitions": {"paid_at": start},
                "lines": {"data": [{"period": {"start": start, "end": end}}]},
            },
        ),
    ]


def _post_signed(request: HttpRequest, event: dict) -> None:
    payload = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(
        payload, stripe_gateway.webhook_secret()
    )
    webhook = urllib.request.Request(  # noqa: S310 - our own endpoint, built from this request
        request.build_absolute_uri(reverse("billing:stripe_webhook")),
        data=payload.encode(),
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        method="POST",
    )
    with urllib.request.urlopen(webhook, timeout=15) as response:  # noqa: S310
        response.read()


_SIMULATED_SETUP = re.compile(r"cs_sim_setup_(\d{1,18})_([0-9a-f]{32})")


@never_cache
@require_http_methods(["GET", "POST"])
@admin_required
def simulated_setup(request: HttpRequest, session_id: str) -> HttpResponse:
    """Offline stand-in for Checkout in setup mode: the admin picks a test card (one that
    pays, one that is declined, one that needs authentication) and "Save card" posts the
    signed checkout.session.completed Stripe would send."""
    if not stripe_gateway.simulated():
        raise Http404("There is no simulated checkout on this site.")
    match = _SIMULATED_SETUP.fullmatch(session_id)
    if match is None or int(match.group(1)) != request.organization.pk:
        raise Http404("No such checkout session.")
    auto = get_object_or_404(
        AutoTopUp, organization=request.organization, setup_session_id=session_id
    )
    if request.method == "GET":
        return render(
            request,
            "billing/simulated_setup.html",
            {"auto": auto, "cards": stripe_gateway.SIMULATED_CARDS},
        )
    form = forms.SimulatedSetupForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a test card.")
        return redirect(request.path)
    session = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "setup",
        "status": "complete",
        "metadata": {"organization_id": str(auto.organization_id), "auto_top_up": "1"},
        "setup_intent": {
            "id": f"seti_sim_{auto.organization_id}",
            "object": "setup_intent",
            "payment_method": form.cleaned_data["card"],
        },
    }
    try:
        _post_signed(request, _event("checkout.session.completed", session))
    except OSError:
        messages.error(request, UNREACHABLE)
        return redirect("billing:overview")
    messages.success(request, "Card saved: auto top-up is on.")
    return redirect("billing:overview")
