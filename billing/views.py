import contextlib
import json
import time
import urllib.request
import uuid

import stripe
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import admin_required
from credits import selectors as credit_selectors

from . import pricing, services, stripe_gateway
from .models import CreditPackage, Purchase


def _local_path(request: HttpRequest, value: str) -> str:
    """Only a path on this site: never send an admin elsewhere after paying."""
    if value.startswith("/") and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return ""


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if number > 0 else None


@require_GET
@admin_required
def add_credits(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    price_list = pricing.price_list_for(organization.currency)
    need = _positive_int(request.GET.get("need"))
    typed = _positive_int(request.GET.get("quantity")) or need
    context = {
        "price_list": price_list,
        "need": need,
        "quantity": typed,
        "next": _local_path(request, request.GET.get("next", "")),
        "request_token": uuid.uuid4(),
        "balance": credit_selectors.organization_balance(organization=organization),
        "simulated": stripe_gateway.simulated(),
    }
    if price_list is not None:
        context["packages"] = pricing.packages(price_list=price_list)
        context.update(_quote_context(price_list, typed))
        if need and need <= pricing.MAX_QUANTITY:
            context["suggestion"] = pricing.suggestion(price_list=price_list, need=need)
    template = "billing/add_credits.html"
    if request.htmx and request.htmx.target == "quote":
        template += "#quote"
    return render(request, template, context)


def _quote_context(price_list, quantity: int | None) -> dict:
    if quantity is None:
        return {}
    try:
        quote = pricing.quote(price_list=price_list, quantity=quantity)
    except ValueError as error:
        return {"quote_error": str(error)}
    best = pricing.best_offer(price_list=price_list, quantity=quantity)
    return {"quote": quote, "best": best if best.package else None}


@require_POST
@admin_required
def purchase_create(request: HttpRequest) -> HttpResponse:
    back = reverse("billing:add_credits")
    try:
        token = uuid.UUID(request.POST.get("request_token", ""))
    except ValueError:
        messages.error(request, "The form was out of date. Please choose again.")
        return redirect(back)
    package = None
    if request.POST.get("package"):
        package = CreditPackage.objects.filter(pk=_positive_int(request.POST["package"])).first()
        if package is None:
            messages.error(request, "That package is not on sale any more.")
            return redirect(back)
    quantity = _positive_int(request.POST.get("quantity"))
    if package is None and quantity is None:
        messages.error(request, "Enter how many credits to buy (a whole number above zero).")
        return redirect(back)
    try:
        purchase = services.purchase_start(
            organization=request.organization,
            user=request.user,
            request_token=token,
            quantity=quantity,
            package=package,
            next_url=_local_path(request, request.POST.get("next", "")),
        )
    except (services.PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
        return redirect(back)
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer. Nothing was charged; please try again.")
        return redirect(back)
    if purchase.status != Purchase.Status.PENDING:
        return redirect("billing:purchase", purchase.pk)
    return redirect(purchase.checkout_url)


@require_GET
@admin_required
def purchase(request: HttpRequest, pk: int) -> HttpResponse:
    """Where Stripe sends the admin back: the credits arriving, then the way back."""
    item = get_object_or_404(Purchase, pk=pk, organization=request.organization)
    # If Stripe cannot be asked now, the webhook will still come; the page keeps polling.
    with contextlib.suppress(stripe.StripeError, stripe_gateway.PaymentsUnavailable):
        item = services.purchase_sync(purchase=item)
    template = "billing/purchase.html"
    if request.htmx and request.htmx.target == "purchase-status":
        template += "#status"
    return render(request, template, {"purchase": item})


@csrf_exempt  # Stripe cannot send a CSRF token; the signature proves the sender instead.
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    secret = stripe_gateway.webhook_secret()
    if not secret:
        return HttpResponseBadRequest("webhooks are not configured")
    try:
        stripe.Webhook.construct_event(
            request.body, request.headers.get("Stripe-Signature", ""), secret
        )
    except (ValueError, stripe.SignatureVerificationError):
        return HttpResponseBadRequest("invalid signature")
    event = json.loads(request.body)
    fresh = services.stripe_event_process(event=event)
    return JsonResponse({"received": True, "duplicate": not fresh})


@require_http_methods(["GET", "POST"])
@admin_required
def simulated_checkout(request: HttpRequest, session_id: str) -> HttpResponse:
    """A stand-in for Stripe's hosted checkout, for machines with no Stripe key (DEBUG only).
    "Pay" sends a signed checkout.session.completed to the real webhook endpoint."""
    if not stripe_gateway.simulated():
        raise Http404("There is no simulated checkout on this site.")
    item = get_object_or_404(
        Purchase, checkout_session_id=session_id, organization=request.organization
    )
    if request.method == "GET":
        return render(request, "billing/simulated_checkout.html", {"purchase": item})
    if request.POST.get("action") == "cancel":
        messages.info(request, "Payment cancelled. Nothing was charged.")
        return redirect("billing:add_credits")
    _send_simulated_event(request, item)
    return redirect("billing:purchase", item.pk)


def _send_simulated_event(request: HttpRequest, item: Purchase) -> None:
    session = {
        "id": item.checkout_session_id,
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "status": "complete",
        "client_reference_id": str(item.pk),
        "metadata": {"organization_id": str(item.organization_id), "purchase_id": str(item.pk)},
        "payment_intent": f"pi_sim_{item.pk}",
        "amount_total": item.amount_minor,
        "currency": item.currency.lower(),
    }
    event = {
        "id": f"evt_sim_{uuid.uuid4().hex}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {"object": session},
    }
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
