"""Purchases and Stripe events. Credits enter the ledger only through credits/services.py,
and only once Stripe has said a payment succeeded."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Organization, User
from credits import services as ledger

from . import pricing, stripe_gateway
from .models import CreditPackage, Purchase, StripeEvent

log = logging.getLogger(__name__)


class PurchaseRefused(Exception):
    """A purchase that cannot be started; the message is fit to show."""


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
    double click or a resubmission return the same purchase (and Stripe session)."""
    existing = Purchase.objects.filter(organization=organization, request_token=request_token)
    if existing.exists():
        return existing.get()
    price_list = pricing.price_list_for(organization.currency)
    if price_list is None:
        raise PurchaseRefused(f"Credits cannot be bought in {organization.currency} yet.")
    if package is not None:
        if package.price_list_id != price_list.pk or not package.active:
            raise PurchaseRefused("That package is not on sale any more.")
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
        return Purchase.objects.get(organization=organization, request_token=request_token)
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


HANDLERS: dict[str, Callable[[dict, dict], object]] = {
    "checkout.session.completed": lambda obj, event: checkout_session_fulfil(
        session=obj, paid_at=_event_time(event)
    ),
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
