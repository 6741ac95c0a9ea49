"""Add credits: a purchase, its Stripe Checkout Session, and its credits once Stripe says it
is paid. Credits enter the ledger only through credits/services.py, and only for a paid
session.

No database lock is held while Stripe is asked: the purchase row commits first, the
session is asked for with the key `purchase:<id>:checkout` (so a double click, a concurrent
duplicate or a retry after a failure all get the same session), and the session is recorded
in a second short statement. Fulfilment grants the lot in one short transaction; the hosted
invoice address is fetched after it commits, by a task of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Organization, User
from credits import services as ledger

from . import pricing, refunds, stripe_gateway
from .errors import EventNotApplicable, PurchaseRefused
from .models import CreditPackage, Purchase

log = logging.getLogger(__name__)

FORM_REUSED = "This form was already used for another purchase; nothing was charged. Choose again."
PRICE_CHANGED = "The price changed since this page was shown; nothing was charged. Check it again."


class CheaperWay(PurchaseRefused):
    """A typed quantity that costs more than another way to get at least as many credits."""

    def __init__(self, price: pricing.Price):
        self.price = price
        offer = price.offer
        what = (
            f"The {offer.quantity:,}-credit package costs"
            if offer.package is not None
            else f"{offer.quantity:,} credits cost"
        )
        paid = pricing.format_money(offer.total_minor, offer.currency)
        super().__init__(
            f"{what} less than {price.asked:,} ({paid}), so nothing was charged yet: "
            "check the offer below and buy it there."
        )


def _typed_offer(book: pricing.PriceBook, quantity: int) -> pricing.Quote:
    try:
        price = book.price(quantity)
    except ValueError as error:
        raise PurchaseRefused(str(error)) from None
    if not price.is_exact:
        raise CheaperWay(price)
    return price.offer


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
    expected_total_minor: int | None = None,
) -> Purchase:
    """Create a pending purchase and its Checkout Session. The form's one-time token makes a
    double click or a resubmission return the same purchase (and Stripe session); the same
    token with another quantity or package is refused. If Stripe fails, the purchase stays
    pending without a session and the same form resumes it.

    A typed quantity is bought only when it is itself the cheapest way to get that many
    credits (billing/pricing.py); otherwise the admin is refused with the cheaper way, which
    the page then offers, so the purchase is always the quantity and total that was shown.
    `expected_total_minor`, the total the page showed, refuses a price that changed since."""
    existing = Purchase.objects.filter(
        organization=organization, request_token=request_token
    ).first()
    if existing is not None:
        return _checkout_open(_same_purchase(existing, quantity=quantity, package=package))
    if not stripe_gateway.payments_available():
        raise stripe_gateway.PaymentsUnavailable
    price_list = pricing.price_list_for(organization.currency)
    if price_list is None:
        raise PurchaseRefused(f"Credits cannot be bought in {organization.currency} yet.")
    book = pricing.PriceBook.of(price_list)
    if package is not None:
        if package.price_list_id != price_list.pk or not package.active:
            raise PurchaseRefused("That package is not on sale any more.")
        if not pricing.package_chargeable(package):
            raise PurchaseRefused(pricing.limit_message(price_list=price_list))
        offer = book.package_offer(package)
    else:
        offer = _typed_offer(book, quantity or 0)
    if expected_total_minor is not None and expected_total_minor != offer.total_minor:
        # The page showed another total (the price list changed since): never charge a
        # figure the admin did not see.
        raise PurchaseRefused(PRICE_CHANGED)
    try:
        # Committed on its own before Stripe is asked (a savepoint if a caller has a
        # transaction open). A concurrent duplicate waits on the unique token only for this
        # insert, then resumes the same purchase below.
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
    except IntegrityError:
        existing = Purchase.objects.get(organization=organization, request_token=request_token)
        return _checkout_open(_same_purchase(existing, quantity=quantity, package=package))
    return _checkout_open(purchase)


def _checkout_open(purchase: Purchase) -> Purchase:
    """The purchase with its Checkout Session, asking Stripe for it if it has none yet."""
    if purchase.checkout_session_id or purchase.status != Purchase.Status.PENDING:
        return purchase
    session_id, url = stripe_gateway.checkout_session_create(purchase)
    # Whoever records first wins; Stripe's idempotency key gave both the same session.
    Purchase.objects.filter(pk=purchase.pk, checkout_session_id__isnull=True).update(
        checkout_session_id=session_id, checkout_url=url
    )
    purchase.refresh_from_db(fields=["checkout_session_id", "checkout_url"])
    return purchase


def _purchase_pk(session: dict) -> int | None:
    value = (session.get("metadata") or {}).get("purchase_id") or session.get("client_reference_id")
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def checkout_session_fulfil(*, session: dict, paid_at: dt.datetime) -> Purchase | None:
    """Grant a paid Checkout Session's credits, exactly once, whoever asks first: the webhook
    or the success page (Stripe's guidance). Unpaid sessions change nothing. Refunds or
    disputes of the payment that arrived first are applied right after (a transaction of
    their own: see billing/refunds.py for the lock order)."""
    purchase_pk = _purchase_pk(session)
    if purchase_pk is None:
        log.warning("checkout session %s is not a purchase of ours", session.get("id"))
        return None
    with transaction.atomic():
        # Only the purchase row: locking its organization or user too (select_related)
        # made Confirm users, which takes key-share locks on them, deadlock with this.
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .filter(pk=purchase_pk, checkout_session_id=session.get("id"))
            .first()
        )
        if purchase is None:
            # Money may have been taken for it: kept failed, for support to look at.
            raise EventNotApplicable(
                f"Checkout session {session.get('id')} matches no purchase {purchase_pk}."
            )
        if session.get("payment_status") not in ("paid", "no_payment_required"):
            return purchase
        if can_proceed(purchase.mark_paid):
            purchase.lot = ledger.lot_grant(
                organization=Organization.objects.get(pk=purchase.organization_id),
                quantity=purchase.quantity,
                source="purchase",
                invoice_date=paid_at,
                reference=session["id"],
                idempotency_key=f"stripe:checkout:{session['id']}",
                actor=User.objects.get(pk=purchase.created_by_id),
            )
            purchase.payment_intent_id = session.get("payment_intent") or ""
            purchase.invoice_id = session.get("invoice") or ""
            purchase.paid_at = paid_at
            purchase.mark_paid()
            purchase.save()
            if purchase.invoice_id:
                _after_commit_fetch_invoice_url(purchase.pk)
    if purchase.payment_intent_id and purchase.status in Purchase.SETTLED:
        # Also when this call granted nothing: an earlier one may have stopped right after
        # its commit, before this step.
        refunds.payment_reconcile(reference=purchase.payment_intent_id)
        purchase.refresh_from_db(fields=["status"])
    return purchase


def _after_commit_fetch_invoice_url(purchase_pk: int) -> None:
    from .tasks import purchase_invoice_url

    # robust: a broker that is down must not turn a committed payment into an error; the
    # invoice stays reachable through the customer portal.
    transaction.on_commit(lambda: purchase_invoice_url.delay(purchase_pk), robust=True)


def purchase_invoice_url_fetch(*, purchase_id: int) -> str:
    """Best effort, after the fulfilment committed: the Stripe-hosted invoice address,
    asked with no transaction open."""
    purchase = Purchase.objects.filter(pk=purchase_id).first()
    if purchase is None or purchase.invoice_url or not purchase.invoice_id:
        return purchase.invoice_url if purchase else ""
    url = stripe_gateway.invoice_hosted_url(purchase.invoice_id)
    if url:
        Purchase.objects.filter(pk=purchase_id, invoice_url="").update(invoice_url=url)
    return url


def checkout_session_fail(*, session: dict) -> None:
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .filter(checkout_session_id=session.get("id"))
            .first()
        )
        if purchase is not None and can_proceed(purchase.mark_failed):
            purchase.mark_failed()
            purchase.save(update_fields=["status"])


def checkout_session_expire(*, session: dict) -> None:
    """A session that expired (or was expired) unpaid: its purchase becomes Cancelled and
    the success page stops waiting. A session of a subscription has no purchase."""
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .filter(checkout_session_id=session.get("id"))
            .first()
        )
        if purchase is not None and can_proceed(purchase.mark_cancelled):
            purchase.mark_cancelled()
            purchase.save(update_fields=["status"])


def purchase_sync(*, purchase: Purchase) -> Purchase:
    """The success page's check with Stripe, for when it arrives before the webhook."""
    if (
        purchase.status != Purchase.Status.PENDING
        or not purchase.checkout_session_id
        or stripe_gateway.simulated()
    ):
        return purchase
    session = stripe_gateway.checkout_session_retrieve(purchase.checkout_session_id)
    if session.get("status") == "expired":
        checkout_session_expire(session=session)
        purchase.refresh_from_db()
        return purchase
    return checkout_session_fulfil(session=session, paid_at=timezone.now()) or purchase
