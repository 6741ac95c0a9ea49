"""Auto top-up (issue 18, part 1): "when the pool's available credits fall below X, buy Y
credits", with a card saved through Stripe Checkout in setup mode.

- Setting it up saves the figures (status `setting_up`) and opens Checkout in setup mode;
  `checkout.session.completed` for that session brings the card, and auto top-up turns on.
- Every write that lowers an organization's available credits sends the ledger's
  `available_lowered` signal after it commits; `auto_top_up_check` then compares the
  available credits with the threshold and, below it and within the month's cap, writes a
  Purchase marked `automatic`. A partial unique index allows one pending automatic purchase
  per organization, so 32 redemptions crossing the threshold at once start one top-up.
- A task charges the saved card off-session (a PaymentIntent for Y credits at the volume
  price, keyed by the purchase: a retried task charges once), with no lock held. The credits
  arrive only from `payment_intent.succeeded`, the same verified webhook path as every
  payment, once (the lot is keyed by the PaymentIntent); refunds and disputes then find the
  purchase as they find any other.
- A declined card, or one that needs the customer to authenticate (SCA), fails the purchase,
  pauses auto top-up and emails the admins once (keyed by the purchase), with a link to the
  Billing page where they set a card up again; the dashboard says it is paused."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
import zoneinfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from django_fsm import can_proceed

from accounts.models import Membership, Organization, User
from config.errors import Refusal
from credits import selectors as credit_selectors
from credits import services as ledger
from outbox.services import NewMessage, messages_enqueue, one_line

from . import pricing, stripe_gateway
from .errors import EventNotApplicable
from .models import AutoTopUp, Purchase

log = logging.getLogger(__name__)

PAUSED = "billing_auto_top_up_paused"
MAX_QUANTITY = 100_000


class AutoTopUpRefused(Refusal):
    """A setting that cannot be saved, with the reason to show."""


def auto_top_up_configure(
    *,
    organization: Organization,
    user: User,
    threshold: int,
    quantity: int,
    monthly_cap: int,
    new_card: bool,
) -> str | None:
    """Save the figures. Returns where to send the admin to save a card (Checkout in setup
    mode), or None when the card on file is kept (auto top-up on, figures changed)."""
    price_list = pricing.price_list_for(organization.currency)
    if price_list is None:
        raise AutoTopUpRefused(f"Credits cannot be bought in {organization.currency} yet.")
    if quantity > pricing.max_quantity(price_list=price_list):
        raise AutoTopUpRefused(pricing.limit_message(price_list=price_list))
    if pricing.price(price_list=price_list, quantity=quantity).exact is None:
        raise AutoTopUpRefused(pricing.limit_message(price_list=price_list))
    if quantity > monthly_cap:
        raise AutoTopUpRefused("The monthly cap must allow at least one top-up.")
    if not stripe_gateway.payments_available():
        raise stripe_gateway.PaymentsUnavailable
    with transaction.atomic():
        auto = AutoTopUp.objects.select_for_update().filter(organization=organization).first()
        keep = (
            auto is not None
            and not new_card
            and auto.status == AutoTopUp.Status.ACTIVE
            and auto.payment_method_id
        )
        auto = auto or AutoTopUp(organization=organization)
        auto.threshold, auto.quantity, auto.monthly_cap = threshold, quantity, monthly_cap
        auto.configured_by = user
        if not keep:
            auto.status = AutoTopUp.Status.SETTING_UP
            auto.setup_session_id = ""
        auto.save()
    transaction.on_commit(_forget_active)
    if keep:
        transaction.on_commit(lambda: auto_top_up_check(organization_id=organization.pk))
        return None
    # The network call with no transaction open; the session is recorded after it.
    session_id, url = stripe_gateway.setup_session_create(auto, uuid.uuid4().hex)
    AutoTopUp.objects.filter(pk=auto.pk, status=AutoTopUp.Status.SETTING_UP).update(
        setup_session_id=session_id
    )
    return url


def auto_top_up_turn_off(*, organization: Organization) -> None:
    """Off: nothing more is bought, and a top-up not sent to Stripe yet is cancelled. A late
    setup event cannot turn it back on (its session is forgotten)."""
    with transaction.atomic():
        _cancel_uncharged(organization.pk)  # the purchases first, as everywhere
        AutoTopUp.objects.filter(organization=organization).update(
            status=AutoTopUp.Status.OFF, setup_session_id=""
        )
    _forget_active()


def _cancel_uncharged(organization_id: int) -> None:
    for purchase in Purchase.objects.select_for_update(of=("self",)).filter(
        organization_id=organization_id,
        automatic=True,
        status=Purchase.Status.PENDING,
        payment_intent_id="",
    ):
        purchase.mark_cancelled()
        purchase.save(update_fields=["status"])


def setup_completed(*, session: dict) -> None:
    """checkout.session.completed in setup mode: the card is saved, auto top-up turns on.
    Only for the latest setup the admin started (an older session completing late changes
    nothing)."""
    auto = AutoTopUp.objects.filter(setup_session_id=session.get("id") or "-").first()
    if auto is None:
        if (session.get("metadata") or {}).get("auto_top_up"):
            # An older setup (the admin started another, or turned auto top-up off): its
            # card is not the one they chose last.
            log.info("setup session %s is no longer the current one", session.get("id"))
            return
        raise EventNotApplicable(f"Setup session {session.get('id')} matches no auto top-up.")
    intent = session.get("setup_intent")
    if isinstance(intent, dict):
        method = intent.get("payment_method") or ""
    else:
        method = stripe_gateway.setup_intent_payment_method(intent or "")
    if not method:
        raise EventNotApplicable(f"Setup session {session.get('id')} saved no card.")
    with transaction.atomic():
        locked = AutoTopUp.objects.select_for_update().get(pk=auto.pk)
        if (
            locked.setup_session_id != session.get("id")
            or locked.status != AutoTopUp.Status.SETTING_UP
        ):
            return  # superseded, turned off, or this event again
        locked.payment_method_id = method
        locked.status = AutoTopUp.Status.ACTIVE
        locked.paused_reason = ""
        locked.save(update_fields=["payment_method_id", "status", "paused_reason", "updated_at"])
    _forget_active()
    auto_top_up_check(organization_id=auto.organization_id)


def _month_start(organization: Organization, now: dt.datetime) -> dt.datetime:
    local = now.astimezone(zoneinfo.ZoneInfo(organization.time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def bought_this_month(*, organization: Organization, now: dt.datetime | None = None) -> int:
    """Credits auto top-up bought or is buying this calendar month (failed ones aside)."""
    start = _month_start(organization, now or timezone.now())
    return (
        Purchase.objects.filter(organization=organization, automatic=True, created_at__gte=start)
        .exclude(status__in=[Purchase.Status.FAILED, Purchase.Status.CANCELLED])
        .aggregate(total=Sum("quantity"))["total"]
        or 0
    )


def auto_top_up_check(*, organization_id: int) -> Purchase | None:
    """Start a top-up if the organization's available credits are below its threshold, the
    month's cap allows it and none is in flight. Safe to call from any number of requests
    at once: the database lets one automatic purchase be pending."""
    auto = (
        AutoTopUp.objects.filter(organization_id=organization_id, status=AutoTopUp.Status.ACTIVE)
        .select_related("organization")
        .first()
    )
    if auto is None:
        return None
    organization = auto.organization
    available = credit_selectors.organization_balance(organization=organization).available
    if available >= auto.threshold:
        return None
    if bought_this_month(organization=organization) + auto.quantity > auto.monthly_cap:
        return None
    price_list = pricing.price_list_for(organization.currency)
    try:
        exact = price_list and pricing.price(price_list=price_list, quantity=auto.quantity).exact
    except ValueError:
        exact = None
    if not exact:
        # The price list changed since: this quantity cannot be bought in one payment.
        _pause(auto, f"{auto.quantity:,} credits cannot be bought in one payment any more")
        return None
    try:
        with transaction.atomic():
            purchase = Purchase.objects.create(
                organization=organization,
                created_by_id=auto.configured_by_id,
                request_token=uuid.uuid4(),
                quantity=auto.quantity,
                amount_minor=exact.total_minor,
                currency=exact.currency,
                automatic=True,
            )
    except IntegrityError:
        return None  # one is in flight already
    from .tasks import auto_top_up_charge

    transaction.on_commit(lambda: auto_top_up_charge.delay(purchase.pk), robust=True)
    return purchase


def auto_top_up_charge(*, purchase_id: int) -> str:
    """Charge the saved card for a pending top-up, once."""
    purchase = Purchase.objects.filter(pk=purchase_id, automatic=True).first()
    if purchase is None or purchase.status != Purchase.Status.PENDING:
        return "nothing to charge"
    if purchase.payment_intent_id:
        return "charged already"  # its webhooks finish it
    # Locks in one order everywhere here: the purchase, then its organization's AutoTopUp.
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update(of=("self",)).get(pk=purchase_id)
        auto = AutoTopUp.objects.select_for_update().get(organization_id=purchase.organization_id)
        if purchase.status != Purchase.Status.PENDING or purchase.payment_intent_id:
            return "nothing to charge"
        if auto.status != AutoTopUp.Status.ACTIVE:
            # Turned off, or a new card is being set up: the old card is not charged.
            purchase.mark_cancelled()
            purchase.save(update_fields=["status"])
            return "cancelled"
        if not purchase.charged_card:
            # Kept for the retries: the same key must carry the same card to Stripe.
            purchase.charged_card = auto.payment_method_id
            purchase.save(update_fields=["charged_card"])
    # Stripe's errors other than the card's (a time-out, a rate limit) raise: the task is
    # retried, and the purchase's idempotency key keeps it to one charge.
    outcome = stripe_gateway.off_session_charge(purchase, purchase.charged_card)
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update(of=("self",)).get(pk=purchase_id)
        if not purchase.payment_intent_id and outcome.payment_intent_id:
            purchase.payment_intent_id = outcome.payment_intent_id
            purchase.save(update_fields=["payment_intent_id"])
        if outcome.status in ("declined", "authentication", "refused"):
            _fail(purchase, outcome.status, outcome.message)
    if outcome.status == "succeeded" and stripe_gateway.simulated():
        _simulated_succeeded(purchase, outcome.payment_intent_id)
    return outcome.status


def _fail(purchase: Purchase, why: str, message: str) -> None:
    """The top-up failed: the purchase fails (unless Stripe already said it was paid), auto
    top-up pauses, and the admins hear once. Call inside a transaction."""
    if can_proceed(purchase.mark_failed):
        purchase.mark_failed()
        purchase.save(update_fields=["status"])
    auto = AutoTopUp.objects.select_for_update().get(organization_id=purchase.organization_id)
    if why == "authentication":
        reason = "the bank asks the cardholder to confirm the payment (authentication)"
    elif why == "refused":
        reason = f"Stripe refused the payment ({message})" if message else "Stripe refused it"
    else:
        reason = f"the card was declined ({message})" if message else "the card was declined"
    # Only the card that failed is paused: one saved since (a new setup) stays on.
    if purchase.charged_card and purchase.charged_card != auto.payment_method_id:
        return
    if _pause(auto, reason):
        _paused_email(purchase, reason)


def _pause(auto: AutoTopUp, reason: str) -> bool:
    """Pause an active auto top-up (call inside a transaction); whether it was on."""
    if auto.status != AutoTopUp.Status.ACTIVE:
        return False
    auto.status = AutoTopUp.Status.PAUSED
    auto.paused_reason = reason[:500]
    auto.save(update_fields=["status", "paused_reason", "updated_at"])
    transaction.on_commit(_forget_active)
    return True


def _paused_email(purchase: Purchase, reason: str) -> None:
    organization = Organization.objects.get(pk=purchase.organization_id)
    admins = list(
        Membership.objects.filter(
            organization=organization, role=Membership.Role.ADMIN
        ).values_list("user__email", flat=True)
    )
    link = settings.SITE_URL + reverse("billing:overview")
    messages_enqueue(
        messages=[
            NewMessage(
                key=f"billing.auto-top-up-paused:{purchase.pk}",
                to=admins,
                subject=f"Auto top-up paused for {one_line(organization.name)}",
                text=(
                    f"Auto top-up tried to buy {purchase.quantity:,} credits and could not: "
                    f"{reason}. Nothing was charged and auto top-up is paused.\n"
                    f"Set up a card again (or buy credits) on the Billing page: {link}\n"
                ),
                kind=PAUSED,
                organization=organization,
            )
        ]
    )


def payment_succeeded(*, intent: dict, paid_at: dt.datetime) -> None:
    """payment_intent.succeeded for an auto top-up: its credits, once."""
    metadata = intent.get("metadata") or {}
    purchase_id = metadata.get("purchase_id")
    if not str(purchase_id or "").isdigit():
        raise EventNotApplicable("The payment names no purchase.")
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .filter(pk=int(purchase_id), automatic=True)
            .first()
        )
        if purchase is None:
            raise EventNotApplicable(f"Payment {intent.get('id')} matches no auto top-up.")
        received = intent.get("amount_received", intent.get("amount"))
        currency = (intent.get("currency") or "").upper()
        if received != purchase.amount_minor or currency != purchase.currency:
            raise EventNotApplicable(
                f"Payment {intent.get('id')} is {received} {currency}, the top-up "
                f"{purchase.amount_minor} {purchase.currency}."
            )
        # Granted already: this event again, and only the reconciliation below may be missing.
        granted = purchase.lot_id is not None
    if not granted:
        _grant_top_up(purchase.pk, intent, paid_at)
    from . import refunds

    # Always, even for an event seen before: a refund parked before the payment is applied
    # here, and a retry finishes a reconciliation that failed after the grant committed.
    refunds.payment_reconcile(reference=intent["id"])


def _grant_top_up(purchase_id: int, intent: dict, paid_at: dt.datetime) -> None:
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update(of=("self",)).get(pk=purchase_id)
        if purchase.lot_id is not None:
            return
        purchase.lot = ledger.lot_grant(
            organization=Organization.objects.get(pk=purchase.organization_id),
            quantity=purchase.quantity,
            source="purchase",
            invoice_date=paid_at,
            reference=intent["id"],
            idempotency_key=f"stripe:payment_intent:{intent['id']}",
            actor=User.objects.get(pk=purchase.created_by_id),
        )
        purchase.payment_intent_id = intent["id"]
        purchase.paid_at = paid_at
        # Paid even if it was failed first: a payment the customer authenticated later.
        purchase.status = Purchase.Status.PAID
        purchase.save(update_fields=["lot", "payment_intent_id", "paid_at", "status"])


def payment_failed(*, intent: dict) -> None:
    """payment_intent.payment_failed for an auto top-up (an asynchronous failure)."""
    purchase_id = (intent.get("metadata") or {}).get("purchase_id")
    if not str(purchase_id or "").isdigit():
        raise EventNotApplicable("The payment names no purchase.")
    error = intent.get("last_payment_error") or {}
    why = "authentication" if error.get("code") == "authentication_required" else "declined"
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .filter(pk=int(purchase_id), automatic=True)
            .first()
        )
        if purchase is None:
            raise EventNotApplicable(f"Payment {intent.get('id')} matches no auto top-up.")
        if purchase.status == Purchase.Status.PENDING:
            _fail(purchase, why, error.get("message", ""))


def _simulated_succeeded(purchase: Purchase, intent_id: str) -> None:
    """Offline: store the event Stripe would send, so the webhook's own path grants it."""
    from . import webhooks

    event = {
        "id": f"evt_sim_{intent_id}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(timezone.now().timestamp()),
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "amount": purchase.amount_minor,
                "amount_received": purchase.amount_minor,
                "currency": purchase.currency.lower(),
                "status": "succeeded",
                "metadata": {"purchase_id": str(purchase.pk), "auto_top_up": "1"},
            }
        },
    }
    webhooks.event_store(body=json.dumps(event).encode())


# Which organizations have auto top-up on, as this process last read it: every redemption
# asks, and most organizations have none, so the answer is read once every ACTIVE_TTL
# seconds (one query for all of them) rather than once per redemption. This process forgets
# it whenever it changes a setting itself; another process sees a change within ACTIVE_TTL,
# and beat's check covers that gap. The database alone decides whether a top-up starts.
ACTIVE_TTL = 30.0
_active: tuple[float, frozenset[int]] = (0.0, frozenset())


def _active_organizations() -> frozenset[int]:
    global _active
    expires, ids = _active
    if time.monotonic() >= expires:
        ids = frozenset(
            AutoTopUp.objects.filter(status=AutoTopUp.Status.ACTIVE).values_list(
                "organization_id", flat=True
            )
        )
        _active = (time.monotonic() + ACTIVE_TTL, ids)
    return ids


def _forget_active() -> None:
    global _active
    _active = (0.0, frozenset())


def on_available_lowered(sender, *, organization_id: int, **kwargs) -> None:
    """The ledger lowered an organization's available credits (after its commit). A failure
    here never reaches the request that spent the credits: beat checks again."""
    try:
        if organization_id in _active_organizations():
            auto_top_up_check(organization_id=organization_id)
    except Exception:
        log.exception("auto top-up check failed for organization %s", organization_id)


# A pending top-up not sent to Stripe after this long lost its task (the broker was down, the
# retries ran out): beat queues it again; after GIVE_UP it fails and auto top-up pauses.
REQUEUE_AFTER = dt.timedelta(minutes=10)
GIVE_UP = dt.timedelta(hours=6)


def auto_top_ups_check(*, now: dt.datetime | None = None) -> int:
    """Beat's fallback: every active auto top-up checked (a signal lost with its process),
    and top-ups stuck before their charge queued again or, much later, given up. One
    organization's error never stops the others'."""
    from .tasks import auto_top_up_charge

    now = now or timezone.now()
    started = 0
    for organization_id in AutoTopUp.objects.filter(status=AutoTopUp.Status.ACTIVE).values_list(
        "organization_id", flat=True
    ):
        try:
            started += auto_top_up_check(organization_id=organization_id) is not None
        except Exception:
            log.exception("auto top-up check failed for organization %s", organization_id)
    stuck = Purchase.objects.filter(
        automatic=True,
        status=Purchase.Status.PENDING,
        payment_intent_id="",
        created_at__lte=now - REQUEUE_AFTER,
    ).values_list("pk", "created_at")
    for purchase_id, created_at in stuck:
        if created_at <= now - GIVE_UP:
            with transaction.atomic():
                purchase = Purchase.objects.select_for_update(of=("self",)).get(pk=purchase_id)
                if purchase.status == Purchase.Status.PENDING and not purchase.payment_intent_id:
                    _fail(purchase, "refused", "Stripe could not be reached for hours")
        else:
            auto_top_up_charge.delay(purchase_id)
    return started
