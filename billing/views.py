import contextlib
import uuid
import zoneinfo

import stripe
from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import admin_required
from credits import selectors as credit_selectors
from credits import validity

from . import (
    autotopup,
    charts,
    checkout,
    forms,
    overage,
    pricing,
    simulated,
    stripe_gateway,
    subscriptions,
    webhooks,
)
from .errors import PurchaseRefused
from .models import AutoTopUp, CreditPackage, Purchase, SubscriptionPlan


def _local_path(request: HttpRequest, value: str) -> str:
    """Only a path on this site: never send an admin elsewhere after paying."""
    if value.startswith("/") and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return ""


# Pages that move money are never shown again from the browser's history or a cache: an old
# copy would offer its old forms (and their one-time tokens) as if they were current.


@never_cache
@require_GET
@admin_required
def add_credits(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    price_list = pricing.price_list_for(organization.currency)
    query = forms.AddCreditsQuery(request.GET)
    query.is_valid()  # fields in error are left out of cleaned_data and shown below
    need = query.cleaned_data.get("need")
    typed = query.cleaned_data.get("quantity")
    context = {
        "price_list": price_list,
        "need": need,
        "need_error": (query.errors.get("need") or [""])[0],
        "next": _local_path(request, forms.cleaned_next(query)),
        # Every Buy button has its own token: one shared by the whole page made a second
        # choice, after Back, find (and check out) the first choice's purchase.
        "quantity_token": uuid.uuid4(),
        "balance": credit_selectors.organization_balance(organization=organization),
        "simulated": stripe_gateway.simulated(),
    }
    if organization.lot_validity_days:
        # What "valid N days" means for a purchase made now (credits/validity.py).
        zone = zoneinfo.ZoneInfo(organization.time_zone)
        ends = validity.validity_end(timezone.now(), organization.lot_validity_days, zone)
        context["usable_through"] = validity.last_usable_day(ends, zone)
    if price_list is not None:
        book = pricing.PriceBook.of(price_list)
        limit = book.max_quantity
        context["max_quantity"] = limit
        context["packages"] = [
            (book.package_offer(package), uuid.uuid4()) for package in book.packages
        ]
        if need is not None and need > limit:
            # No purchase can cover it: say so rather than offer one Stripe would refuse.
            context["need_above_limit"] = pricing.limit_message(price_list=price_list, limit=limit)
        elif need is not None:
            context["suggestion"] = book.price(need)
            context["suggestion_token"] = uuid.uuid4()
            typed = typed or need
        context.update(_quote_context(book, typed))
        if "quantity" in query.errors:
            context["quote_error"] = query.errors["quantity"][0]
    context["quantity"] = typed
    template = "billing/add_credits.html"
    if request.htmx and request.htmx.target == "quote":
        template += "#quote"
    return render(request, template, context)


def _quote_context(book: pricing.PriceBook, quantity: int | None) -> dict:
    """The live quote: the price of the typed quantity, and a Buy button of its own (with its
    own token) when the cheapest way is another quantity or a package."""
    if quantity is None:
        return {}
    try:
        price = book.price(quantity)
    except ValueError as error:
        return {"quote_error": str(error)}
    return {"quote": price, "quote_token": uuid.uuid4()}


@require_POST
@admin_required
def purchase_create(request: HttpRequest) -> HttpResponse:
    back = reverse("billing:add_credits")
    price_list = pricing.price_list_for(request.organization.currency)
    limits = {}
    if price_list is not None:
        limit = pricing.max_quantity(price_list=price_list)
        limits = {
            "max_quantity": limit,
            "limit_message": pricing.limit_message(price_list=price_list, limit=limit),
        }
    form = forms.PurchaseForm(request.POST, **limits)
    if not form.is_valid():
        messages.error(request, forms.first_error(form))
        return redirect(back)
    package = None
    if form.cleaned_data["package"] is not None:
        package = CreditPackage.objects.filter(pk=form.cleaned_data["package"]).first()
        if package is None:
            messages.error(request, "That package is not on sale any more.")
            return redirect(back)
    next_url = _local_path(request, forms.cleaned_next(form))
    try:
        purchase = checkout.purchase_start(
            organization=request.organization,
            user=request.user,
            request_token=form.cleaned_data["request_token"],
            quantity=None if package else form.cleaned_data["quantity"],
            package=package,
            next_url=next_url,
            expected_total_minor=form.cleaned_data["total"],
        )
    except checkout.CheaperWay as cheaper:
        # Back to the page with that quantity quoted: its offer has a Buy button of its own.
        messages.warning(request, str(cheaper))
        query = {"quantity": cheaper.price.asked} | ({"next": next_url} if next_url else {})
        return redirect(f"{back}?{urlencode(query)}")
    except (PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
        return redirect(back)
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer. Nothing was charged; please try again.")
        return redirect(back)
    if purchase.status != Purchase.Status.PENDING or not purchase.checkout_url:
        return redirect("billing:purchase", purchase.pk)
    return redirect(purchase.checkout_url)


@never_cache
@require_GET
@admin_required
def purchase(request: HttpRequest, pk: int) -> HttpResponse:
    """Where Stripe sends the admin back: the credits arriving, then the way back."""
    item = get_object_or_404(Purchase, pk=pk, organization=request.organization)
    # If Stripe cannot be asked now, the webhook will still come; the page keeps polling.
    with contextlib.suppress(stripe.StripeError, stripe_gateway.PaymentsUnavailable):
        item = checkout.purchase_sync(purchase=item)
    template = "billing/purchase.html"
    if request.htmx and request.htmx.target == "purchase-status":
        template += "#status"
    return render(request, template, {"purchase": item})


@csrf_exempt  # Stripe cannot send a CSRF token; the signature proves the sender instead.
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify, store (committed), answer: the event is processed by a task afterwards, so a
    handler's failure is never Stripe's 500 (billing/webhooks.py)."""
    secret = stripe_gateway.webhook_secret()
    if not secret:
        return HttpResponseBadRequest("webhooks are not configured")
    try:
        stripe.WebhookSignature.verify_header(
            request.body,
            request.headers.get("Stripe-Signature", ""),
            secret,
            stripe.Webhook.DEFAULT_TOLERANCE,
        )
    except (UnicodeDecodeError, stripe.SignatureVerificationError):
        return HttpResponseBadRequest("invalid signature")
    _, fresh = webhooks.event_store(body=request.body)
    return JsonResponse({"received": True, "duplicate": not fresh})


@never_cache
@require_GET
@admin_required
def overview(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    subscription = subscriptions.live_subscription(organization=organization)
    plans = SubscriptionPlan.objects.filter(active=True, currency=organization.currency)
    upgrades = []
    if subscription is not None:
        upgrades = [
            p
            for p in plans
            if p.interval == subscription.plan.interval and p.rank > subscription.plan.rank
        ]
    auto = AutoTopUp.objects.filter(organization=organization).first()
    context = {
        "balance": credit_selectors.organization_balance(organization=organization),
        "subscription": subscription,
        "plans": plans,
        "upgrades": upgrades,
        # A purchase whose Stripe request never went through has nothing to show.
        "purchases": Purchase.objects.filter(
            Q(checkout_session_id__isnull=False) | Q(automatic=True), organization=organization
        ).select_related("lot")[:20],
        "overages": credit_selectors.overages(organization=organization)[:20],
        "failed_overage_invoices": overage.failed_overage_invoices(organization=organization),
        "chart": charts.organization_monthly_bars(organization=organization),
        # One token per Subscribe button, as on Add credits: it is the Stripe idempotency
        # key, which Stripe refuses to reuse for another plan.
        "subscribe_choices": [(plan, uuid.uuid4()) for plan in plans],
        "simulated": stripe_gateway.simulated(),
        "auto_top_up": auto,
        "auto_bought": autotopup.bought_this_month(organization=organization) if auto else 0,
    }
    return render(request, "billing/overview.html", context)


def _plan(form: forms.PlanForm) -> SubscriptionPlan:
    plan = SubscriptionPlan.objects.filter(pk=form.cleaned_data["plan"]).first()
    if plan is None:
        raise PurchaseRefused("That plan is not available.")
    return plan


@require_POST
@admin_required
def subscribe(request: HttpRequest) -> HttpResponse:
    form = forms.SubscribeForm(request.POST)
    if not form.is_valid():
        messages.error(request, forms.first_error(form))
        return redirect("billing:overview")
    try:
        url = subscriptions.subscription_start(
            organization=request.organization,
            plan=_plan(form),
            request_token=form.cleaned_data["request_token"].hex,
        )
    except (PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
        return redirect("billing:overview")
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer. Nothing was charged; please try again.")
        return redirect("billing:overview")
    return redirect(url)


@require_POST
@admin_required
def subscription_upgrade(request: HttpRequest) -> HttpResponse:
    form = forms.PlanForm(request.POST)
    if not form.is_valid():
        messages.error(request, forms.first_error(form))
        return redirect("billing:overview")
    try:
        plan = _plan(form)
        subscription = subscriptions.subscription_upgrade(
            organization=request.organization, plan=plan, actor=request.user
        )
    except (PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
        return redirect("billing:overview")
    except stripe.IdempotencyError:
        # Each change has a key of its own, so this is Stripe still busy with the same one.
        messages.error(
            request,
            "Stripe is still working on this change. Nothing was sent twice; reload this page "
            "in a minute to see where your subscription stands.",
        )
        return redirect("billing:overview")
    except stripe.StripeError:
        # A refusal, or an answer that never came: in the second case Stripe may have made
        # the change, which its events then record here. Asking again changes nothing twice.
        messages.error(
            request,
            "Stripe did not confirm the change. If it went through, this page shows it within "
            "a minute; otherwise ask again.",
        )
        return redirect("billing:overview")
    if stripe_gateway.simulated():
        try:
            simulated.upgrade_paid(request, subscription, plan)
        except OSError:
            messages.error(request, simulated.UNREACHABLE)
        else:
            messages.success(request, f"Upgraded to {plan} (simulated payment).")
        return redirect("billing:overview")
    messages.success(
        request,
        f"Upgrade to {plan} requested. The extra credits of this period arrive as soon as "
        "Stripe confirms the prorated payment.",
    )
    return redirect("billing:overview")


@require_POST
@admin_required
def subscription_cancel(request: HttpRequest) -> HttpResponse:
    try:
        subscription = subscriptions.subscription_cancel(organization=request.organization)
    except (PurchaseRefused, stripe_gateway.PaymentsUnavailable) as refusal:
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


@require_POST
@admin_required
def auto_top_up(request: HttpRequest) -> HttpResponse:
    """Auto top-up: save its figures (keeping the card on file), set a card up (Checkout in
    setup mode), or turn it off."""
    form = forms.AutoTopUpForm(request.POST)
    if not form.is_valid():
        messages.error(request, forms.first_error(form))
        return redirect("billing:overview")
    action = form.cleaned_data["action"]
    if action == "off":
        autotopup.auto_top_up_turn_off(organization=request.organization)
        messages.success(request, "Auto top-up is off. Nothing more will be bought by itself.")
        return redirect("billing:overview")
    try:
        url = autotopup.auto_top_up_configure(
            organization=request.organization,
            user=request.user,
            threshold=form.cleaned_data["threshold"],
            quantity=form.cleaned_data["quantity"],
            monthly_cap=form.cleaned_data["monthly_cap"],
            new_card=action == "card",
        )
    except (autotopup.AutoTopUpRefused, stripe_gateway.PaymentsUnavailable) as refusal:
        messages.error(request, str(refusal))
        return redirect("billing:overview")
    if url is None:
        messages.success(request, "Auto top-up saved; the card on file is kept.")
        return redirect("billing:overview")
    return redirect(url)
