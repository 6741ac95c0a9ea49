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
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import admin_required
from credits import selectors as credit_selectors

from . import charts, pricing, services, stripe_gateway
from .models import CreditPackage, Purchase, SubscriptionPlan


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
    "Pay" sends the events Stripe would send, signed, to the real webhook endpoint."""
    if not stripe_gateway.simulated():
        raise Http404("There is no simulated checkout on this site.")
    if session_id.startswith("cs_sim_sub_"):
        _, _, _, plan_id, token = session_id.split("_", 4)
        plan = get_object_or_404(SubscriptionPlan, pk=_positive_int(plan_id), active=True)
        item, events = None, _simulated_subscription_events(request, session_id, plan, token)
        back = "billing:overview"
    else:
        item = get_object_or_404(
            Purchase, checkout_session_id=session_id, organization=request.organization
        )
        plan, events = None, [_simulated_purchase_event(item)]
        back = "billing:add_credits"
    if request.method == "GET":
        return render(request, "billing/simulated_checkout.html", {"purchase": item, "plan": plan})
    if request.POST.get("action") == "cancel":
        messages.info(request, "Payment cancelled. Nothing was charged.")
        return redirect(back)
    for event in events:
        _post_signed(request, event)
    if item is None:
        messages.success(request, f"Subscribed to {plan}.")
        return redirect("billing:overview")
    return redirect("billing:purchase", item.pk)


def _event(type_: str, obj: dict) -> dict:
    return {
        "id": f"evt_sim_{uuid.uuid4().hex}",
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def _simulated_purchase_event(item: Purchase) -> dict:
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


def _simulated_subscription_events(
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


@require_GET
@admin_required
def overview(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    subscription = services.live_subscription(organization=organization)
    plans = SubscriptionPlan.objects.filter(active=True, currency=organization.currency)
    upgrades = []
    if subscription is not None:
        upgrades = [
            p
            for p in plans
            if p.interval == subscription.plan.interval and p.rank > subscription.plan.rank
        ]
    context = {
        "balance": credit_selectors.organization_balance(organization=organization),
        "subscription": subscription,
        "plans": plans,
        "upgrades": upgrades,
        "purchases": Purchase.objects.filter(organization=organization).select_related("lot")[:20],
        "overages": credit_selectors.overages(organization=organization)[:20],
        "chart": charts.monthly_bars(credit_selectors.monthly_flows(organization=organization)),
        "request_token": uuid.uuid4(),
        "simulated": stripe_gateway.simulated(),
    }
    return render(request, "billing/overview.html", context)


def _plan(request: HttpRequest) -> SubscriptionPlan | None:
    return SubscriptionPlan.objects.filter(pk=_positive_int(request.POST.get("plan"))).first()


@require_POST
@admin_required
def subscribe(request: HttpRequest) -> HttpResponse:
    plan = _plan(request)
    token = request.POST.get("request_token", "")
    try:
        uuid.UUID(token)
        if plan is None:
            raise services.PurchaseRefused("That plan is not available.")
        url = services.subscription_start(
            organization=request.organization, plan=plan, request_token=uuid.UUID(token).hex
        )
    except ValueError:
        messages.error(request, "The form was out of date. Please choose again.")
        return redirect("billing:overview")
    except (services.PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
        return redirect("billing:overview")
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer. Nothing was charged; please try again.")
        return redirect("billing:overview")
    return redirect(url)


@require_POST
@admin_required
def subscription_upgrade(request: HttpRequest) -> HttpResponse:
    plan = _plan(request)
    try:
        if plan is None:
            raise services.PurchaseRefused("That plan is not available.")
        services.subscription_upgrade(
            organization=request.organization, plan=plan, actor=request.user
        )
    except (services.PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer. Nothing changed; please try again.")
    else:
        messages.success(
            request, f"Upgraded to {plan}: the extra credits of this period are in your pool."
        )
    return redirect("billing:overview")


@require_POST
@admin_required
def subscription_cancel(request: HttpRequest) -> HttpResponse:
    try:
        subscription = services.subscription_cancel(organization=request.organization)
    except (services.PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer. Nothing changed; please try again.")
    else:
        end = subscription.current_period_end
        messages.success(
            request,
            "Your subscription ends at the end of this period"
            + (f" ({timezone.localtime(end):%b %-d, %Y})." if end else ".")
            + " Credits already granted stay yours until they expire.",
        )
    return redirect("billing:overview")


@require_POST
@admin_required
def customer_portal(request: HttpRequest) -> HttpResponse:
    try:
        return redirect(stripe_gateway.customer_portal_url(request.organization))
    except stripe_gateway.PaymentsUnavailable:
        messages.error(request, "The Stripe customer portal is not available on this site.")
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer; please try again.")
    return redirect("billing:overview")
