"""Purchases and Stripe events. Credits enter the ledger only through credits/services.py,
and only once Stripe has said a payment succeeded."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import zoneinfo
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Organization, User
from config.errors import Refusal
from credits import services as ledger

from . import pricing, stripe_gateway
from .models import CreditPackage, Purchase, StripeEvent, Subscription, SubscriptionPlan

log = logging.getLogger(__name__)


class PurchaseRefused(Refusal):
    """A purchase that cannot be started; the message is fit to show."""


FORM_REUSED = "This form was already used for another purchase; nothing was charged. Choose again."


def _same_purchase(
    existing: Purchase, *, quantity: int | None, package: CreditPackage | None
) -> Purchase:
    """The purchase a token already made, if the form asks for the same thing again (a double
    click). A page kept in history offers its old token with another choice: that must never
    lead to the first purchase's checkout."""
    if package is not None:
        same = existing.package_id == package.pk
    else:
        same = existing.package_id is None and existing.quantity == quantity
    if not same:
        raise PurchaseRefused(FORM_REUSED)
    return existing


def purchase_start(
    *,
    organization: Organization,
    user: User,
    request_token: uuid.UUID,
    quantity: int | None = None,
    package: CreditPackage | None = None,
    next_url: str = "",
) -> Purchase:
    """Create a pending purchase and its Checkout Session. The form's one-time token makes a
    double click or a resubmission return the same purchase (and Stripe session); the same
    token with another quantity or package is refused."""
    existing = Purchase.objects.filter(
        organization=organization, request_token=request_token
    ).first()
    if existing is not None:
        return _same_purchase(existing, quantity=quantity, package=package)
    price_list = pricing.price_list_for(organization.currency)
    if price_list is None:
        raise PurchaseRefused(f"Credits cannot be bought in {organization.currency} yet.")
    if package is not None:
        if package.price_list_id != price_list.pk or not package.active:
            raise PurchaseRefused("That package is not on sale any more.")
        if not pricing.package_chargeable(package):
            raise PurchaseRefused(pricing.limit_message(price_list=price_list))
        offer = pricing.package_quote(package=package)
    else:
        try:
            offer = pricing.quote(price_list=price_list, quantity=quantity or 0)
        except ValueError as error:
            raise PurchaseRefused(str(error)) from None
    try:
        # The row and the session are created together: a concurrent duplicate waits on the
        # unique token until this commits, then finds the finished purchase above.
        with transaction.atomic():
            purchase = Purchase.objects.create(
                organization=organization,
                created_by=user,
                request_token=request_token,
                quantity=offer.quantity,
                amount_minor=offer.total_minor,
                currency=offer.currency,
                package=offer.package,
                next_url=next_url,
            )
            session_id, url = stripe_gateway.checkout_session_create(purchase)
            purchase.checkout_session_id = session_id
            purchase.checkout_url = url
            purchase.save(update_fields=["checkout_session_id", "checkout_url"])
    except IntegrityError:
        existing = Purchase.objects.get(organization=organization, request_token=request_token)
        return _same_purchase(existing, quantity=quantity, package=package)
    return purchase


def checkout_session_fulfil(*, session: dict, paid_at: dt.datetime) -> Purchase | None:
    """Grant a paid Checkout Session's credits, exactly once, whoever asks first: the webhook
    or the success page (Stripe's guidance). Unpaid sessions change nothing."""
    purchase_id = (session.get("metadata") or {}).get("purchase_id") or session.get(
        "client_reference_id"
    )
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update()
            .select_related("organization", "created_by")
            .filter(pk=purchase_id, checkout_session_id=session.get("id"))
            .first()
        )
        if purchase is None:
            log.warning("checkout session %s matches no purchase", session.get("id"))
            return None
        if session.get("payment_status") not in ("paid", "no_payment_required"):
            return purchase
        if not can_proceed(purchase.mark_paid):
            return purchase  # already paid (or failed for good): never a second lot
        purchase.lot = ledger.lot_grant(
            organization=purchase.organization,
            quantity=purchase.quantity,
            source="purchase",
            invoice_date=paid_at,
            reference=session["id"],
            idempotency_key=f"stripe:checkout:{session['id']}",
            actor=purchase.created_by,
        )
        purchase.payment_intent_id = session.get("payment_intent") or ""
        purchase.invoice_id = session.get("invoice") or ""
        purchase.invoice_url = stripe_gateway.invoice_hosted_url(purchase.invoice_id)
        purchase.paid_at = paid_at
        purchase.mark_paid()
        purchase.save()
    return purchase


def checkout_session_fail(*, session: dict) -> None:
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update()
            .filter(checkout_session_id=session.get("id"))
            .first()
        )
        if purchase is not None and can_proceed(purchase.mark_failed):
            purchase.mark_failed()
            purchase.save()


def purchase_sync(*, purchase: Purchase) -> Purchase:
    """The success page's check with Stripe, for when it arrives before the webhook."""
    if purchase.status != Purchase.Status.PENDING or stripe_gateway.simulated():
        return purchase
    session = stripe_gateway.checkout_session_retrieve(purchase.checkout_session_id)
    return checkout_session_fulfil(session=session, paid_at=timezone.now()) or purchase


def payment_revoke(*, payment_intent_id: str, reason: str) -> None:
    """A refund or dispute despite "all sales are final": what is left of that lot is
    revoked, never below zero (what was spent stays spent)."""
    if not payment_intent_id:
        return
    purchase = Purchase.objects.filter(
        payment_intent_id=payment_intent_id, lot__isnull=False
    ).first()
    if purchase is None:
        log.warning("refund or dispute for unknown payment %s", payment_intent_id)
        return
    ledger.lot_revoke(
        lot=purchase.lot, reason=reason, idempotency_key=f"stripe:revoke:{purchase.lot_id}"
    )


# --- Webhook events ------------------------------------------------------------------------


def _event_time(event: dict) -> dt.datetime:
    return dt.datetime.fromtimestamp(event["created"], tz=dt.UTC)


def _checkout_completed(obj: dict, event: dict) -> None:
    if obj.get("mode") == "subscription":
        subscription_checkout_completed(session=obj)
    else:
        checkout_session_fulfil(session=obj, paid_at=_event_time(event))


HANDLERS: dict[str, Callable[[dict, dict], object]] = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": lambda obj, event: checkout_session_fulfil(
        session=obj, paid_at=_event_time(event)
    ),
    "checkout.session.async_payment_failed": lambda obj, event: checkout_session_fail(session=obj),
    "charge.refunded": lambda obj, event: payment_revoke(
        payment_intent_id=obj.get("payment_intent") or "", reason="Stripe: charge refunded"
    ),
    "charge.dispute.created": lambda obj, event: payment_revoke(
        payment_intent_id=obj.get("payment_intent") or "", reason="Stripe: payment disputed"
    ),
    "invoice.paid": lambda obj, event: invoice_paid(invoice=obj, event=event),
    "customer.subscription.created": lambda obj, event: subscription_sync(obj=obj),
    "customer.subscription.updated": lambda obj, event: subscription_sync(obj=obj),
    "customer.subscription.deleted": lambda obj, event: subscription_sync(obj=obj),
}


def stripe_event_process(*, event: dict) -> bool:
    """Handle a verified webhook event once. Returns False for a redelivery. Unknown types
    are stored and acknowledged. Simultaneous deliveries of one event queue on its row."""
    with transaction.atomic():
        record, _ = StripeEvent.objects.get_or_create(
            event_id=event["id"], defaults={"type": event["type"], "payload": event}
        )
        record = StripeEvent.objects.select_for_update().get(pk=record.pk)
        if record.processed_at is not None:
            return False
        handler = HANDLERS.get(event["type"])
        if handler is not None:
            handler(event["data"]["object"], event)
        record.processed_at = timezone.now()
        record.save(update_fields=["processed_at"])
    return True


# --- Subscriptions (seed 001) ---------------------------------------------------------------


def _timestamp(value: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if value else None


def _subscription_metadata(invoice: dict) -> tuple[str | None, dict]:
    """(subscription id, metadata) of an invoice, in the API's older and newer shapes."""
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    subscription_id = invoice.get("subscription") or details.get("subscription")
    metadata = details.get("metadata") or invoice.get("subscription_details", {}).get("metadata")
    if not metadata:
        lines = (invoice.get("lines") or {}).get("data") or [{}]
        metadata = lines[0].get("metadata") or {}
    return subscription_id, metadata


def subscription_record(
    *, stripe_subscription_id: str, organization_id: int, plan: SubscriptionPlan, **fields
) -> Subscription:
    record, _ = Subscription.objects.update_or_create(
        stripe_subscription_id=stripe_subscription_id,
        defaults={"organization_id": organization_id, "plan": plan, **fields},
    )
    return record


def subscription_checkout_completed(*, session: dict) -> None:
    metadata = session.get("metadata") or {}
    plan = SubscriptionPlan.objects.filter(pk=metadata.get("plan_id")).first()
    if plan is None or not session.get("subscription"):
        log.warning("subscription checkout %s without plan or subscription", session.get("id"))
        return
    # Only the link is recorded here; a paid invoice makes it active and grants credits.
    Subscription.objects.get_or_create(
        stripe_subscription_id=session["subscription"],
        defaults={"organization_id": int(metadata["organization_id"]), "plan": plan},
    )


def invoice_paid(*, invoice: dict, event: dict) -> None:
    """A paid subscription period grants its plan's credits: one lot per (subscription,
    period), whatever the order or number of deliveries. Proration invoices of an upgrade
    grant nothing here (the upgrade granted the difference at once)."""
    if invoice.get("billing_reason") not in ("subscription_create", "subscription_cycle"):
        return
    subscription_id, metadata = _subscription_metadata(invoice)
    if not subscription_id:
        return
    existing = Subscription.objects.filter(stripe_subscription_id=subscription_id).first()
    plan = SubscriptionPlan.objects.filter(pk=metadata.get("plan_id")).first() or (
        existing.plan if existing else None
    )
    organization_id = metadata.get("organization_id") or (
        existing.organization_id if existing else None
    )
    if plan is None or organization_id is None:
        log.warning("paid invoice %s names no known plan", invoice.get("id"))
        return
    line = ((invoice.get("lines") or {}).get("data") or [{}])[0]
    period = line.get("period") or {}
    start, end = _timestamp(period.get("start")), _timestamp(period.get("end"))
    record = subscription_record(
        stripe_subscription_id=subscription_id,
        organization_id=int(organization_id),
        plan=plan,
        status="active",
        current_period_start=start,
        current_period_end=end,
    )
    paid_at = _timestamp((invoice.get("status_transitions") or {}).get("paid_at"))
    ledger.lot_grant(
        organization=record.organization,
        quantity=plan.credits_per_period,
        source="subscription",
        invoice_date=paid_at or _event_time(event),
        reference=invoice["id"],
        idempotency_key=f"stripe:subscription:{subscription_id}:{period.get('start')}",
    )


def subscription_sync(*, obj: dict) -> None:
    """customer.subscription.* events keep status, plan, period and cancellation."""
    record = Subscription.objects.filter(stripe_subscription_id=obj.get("id")).first()
    if record is None:
        return  # not ours yet: the checkout or the first paid invoice will record it
    item = ((obj.get("items") or {}).get("data") or [{}])[0]
    price_id = (item.get("price") or {}).get("id")
    plan = SubscriptionPlan.objects.filter(stripe_price_id=price_id).first() if price_id else None
    record.status = obj.get("status", record.status)
    record.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    record.stripe_item_id = item.get("id") or record.stripe_item_id
    start = obj.get("current_period_start") or item.get("current_period_start")
    end = obj.get("current_period_end") or item.get("current_period_end")
    record.current_period_start = _timestamp(start) or record.current_period_start
    record.current_period_end = _timestamp(end) or record.current_period_end
    record.plan = plan or record.plan
    record.save()


def live_subscription(*, organization: Organization) -> Subscription | None:
    return (
        Subscription.objects.filter(
            organization=organization, status__in=Subscription.LIVE_STATUSES
        )
        .select_related("plan")
        .first()
    )


def subscription_start(
    *, organization: Organization, plan: SubscriptionPlan, request_token: str
) -> str:
    if live_subscription(organization=organization) is not None:
        raise PurchaseRefused("You already have a subscription: upgrade it instead.")
    if not plan.active or plan.currency != organization.currency:
        raise PurchaseRefused("That plan is not available.")
    return stripe_gateway.subscription_checkout_create(organization, plan, request_token)


def subscription_upgrade(*, organization: Organization, plan: SubscriptionPlan, actor: User):
    """Move to a bigger tier of the same interval; the difference in credits for the current
    period is granted at once (once, whatever the retries)."""
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update()
            .select_related("plan")
            .filter(organization=organization, status__in=Subscription.LIVE_STATUSES)
            .first()
        )
        if subscription is None:
            raise PurchaseRefused("There is no subscription to upgrade.")
        current = subscription.plan
        if plan.interval != current.interval or plan.rank <= current.rank or not plan.active:
            raise PurchaseRefused(f"{plan} is not an upgrade of {current}.")
        stripe_gateway.subscription_change_plan(subscription, plan)
        period = subscription.current_period_start or subscription.created_at
        ledger.lot_grant(
            organization=organization,
            quantity=plan.credits_per_period - current.credits_per_period,
            source="subscription",
            invoice_date=timezone.now(),
            reference="",
            idempotency_key=(
                f"subscription:{subscription.pk}:upgrade:{plan.pk}:{int(period.timestamp())}"
            ),
            actor=actor,
        )
        subscription.plan = plan
        subscription.save(update_fields=["plan"])
    return subscription


def subscription_cancel(*, organization: Organization) -> Subscription:
    subscription = live_subscription(organization=organization)
    if subscription is None:
        raise PurchaseRefused("There is no subscription to cancel.")
    stripe_gateway.subscription_cancel_at_period_end(subscription)
    subscription.cancel_at_period_end = True
    subscription.save(update_fields=["cancel_at_period_end"])
    return subscription


# --- Overage (seed 002) ---------------------------------------------------------------------


def overage_month_start(*, organization: Organization, now: dt.datetime | None = None):
    """Midnight on the first of the current month where the organization is: overage before
    it belongs to months that are over."""
    local = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(organization.time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def overage_invoice(*, organization_id: int, now: dt.datetime | None = None) -> str | None:
    """Put the organization's unbilled overage of past months on one Stripe invoice at the
    list price, once: the rows are locked, invoiced and marked in one transaction, and the
    Stripe requests carry keys per organization and month, so a retry bills nothing twice."""
    organization = Organization.objects.get(pk=organization_id)
    before = overage_month_start(organization=organization, now=now)
    month = (before - dt.timedelta(days=1)).strftime("%Y-%m")
    price_list = pricing.price_list_for(organization.currency)
    if price_list is None:
        log.error("no %s price list to bill overage of %s", organization.currency, organization)
        return None
    with transaction.atomic():
        quantity = ledger.overage_lock_unbilled(organization=organization, before=before)
        if not quantity:
            return None
        invoice_id = stripe_gateway.overage_invoice_create(
            organization,
            quantity=quantity,
            amount_minor=quantity * price_list.list_price_minor,
            currency=organization.currency,
            month=month,
        )
        ledger.overage_mark_billed(
            organization=organization, before=before, invoice_reference=invoice_id
        )
    return invoice_id
