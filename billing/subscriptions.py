"""Subscriptions (seed 001): a plan's credits for each paid period, upgrades paid before
their credits arrive, and a state that follows Stripe's newest word.

Credits are bought only with money Stripe actually charged (`amount_paid`, which is what is
left after Stripe applied any customer balance). For every paid subscription invoice:

    credits = floor(amount_paid * credits_per_period / price_minor)   of the plan it pays for

capped, for a period invoice, at the plan's `credits_per_period`, and for a plan change at
the difference between the two plans' credits for the part of the period left (rounded
down; nothing for a change to a plan with fewer credits). So the credits granted in a
period never exceed what was paid in it at the rates of the plans paid for, whatever the
sequence of upgrades and downgrades:

- A downgrade (Stripe credits the unused time to the customer balance and charges nothing)
  grants nothing. That balance is money which already bought credits, so whatever it pays
  later (a new upgrade's proration, a renewal) buys no credits again: only `amount_paid`
  counts. A renewal paid wholly from the balance grants nothing; one paid in part grants in
  proportion. A discount lowers the credits the same way.
- A paid period (`invoice.paid`, `subscription_create` / `subscription_cycle`) grants at
  most once per (subscription, period start), whatever the number of invoices, deliveries
  or their order; a second paid invoice of the same period grants nothing.
- Status, plan, period and cancellation change only from `customer.subscription.*` events
  newer than the last one applied (`Subscription.state_as_of`), and never out of an ended
  status: a late `invoice.paid` cannot revive a cancelled subscription.
- An upgrade asks Stripe with `payment_behavior=pending_if_incomplete`; its credits come
  with the paid proration invoice (`billing_reason=subscription_update`), once per invoice.
- A subscription keeps its currency: a change to a plan in another currency is refused
  before Stripe is asked, and an invoice in another currency than its plan, the plan it
  leaves or the organization grants nothing (the event fails with the reason).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from fractions import Fraction

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization, User
from credits import services as ledger

from . import refunds, stripe_gateway
from .errors import EventNotApplicable, PurchaseRefused
from .models import SettledStatus, Subscription, SubscriptionInvoice, SubscriptionPlan

log = logging.getLogger(__name__)

# Where each status sits in a subscription's life: of two events with the same `created`
# second, the one further on wins, so a tie never sends it back to `incomplete`.
_STAGE = {
    "incomplete": 0,
    "trialing": 1,
    "active": 2,
    "past_due": 3,
    "unpaid": 4,
    "paused": 4,
    "canceled": 5,
    "incomplete_expired": 5,
}


def _timestamp(value) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if isinstance(value, int) else None


def _created(event: dict) -> dt.datetime:
    return dt.datetime.fromtimestamp(event["created"], tz=dt.UTC)


def _state_applies(record: Subscription, status: str, at: dt.datetime) -> bool:
    """Whether a state dated `at` replaces the recorded one."""
    if record.status in Subscription.ENDED_STATUSES and status not in Subscription.ENDED_STATUSES:
        return False  # Stripe never brings an ended subscription back
    if record.state_as_of is None or at > record.state_as_of:
        return True
    return at == record.state_as_of and _STAGE.get(status, 0) >= _STAGE.get(record.status, 0)


# --- Reading Stripe's objects ----------------------------------------------------------------


def _subscription_metadata(invoice: dict) -> tuple[str | None, dict]:
    """(subscription id, metadata) of an invoice, in the API's older and newer shapes."""
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    subscription_id = refunds._id(invoice.get("subscription")) or refunds._id(
        details.get("subscription")
    )
    metadata = details.get("metadata") or (invoice.get("subscription_details") or {}).get(
        "metadata"
    )
    if not metadata:
        metadata = (_lines(invoice) or [{}])[0].get("metadata") or {}
    return subscription_id or None, metadata


def _lines(invoice: dict) -> list[dict]:
    return [line for line in (invoice.get("lines") or {}).get("data") or [] if line]


def _line_price(line: dict) -> str:
    """The price id of an invoice line: `pricing.price_details.price` today, `price` (or
    `plan`) in older API versions."""
    details = (line.get("pricing") or {}).get("price_details") or {}
    return (
        refunds._id(details.get("price"))
        or refunds._id(line.get("price"))
        or refunds._id(line.get("plan"))
    )


def _plan_of_price(price_id: str) -> SubscriptionPlan | None:
    if not price_id:
        return None
    return SubscriptionPlan.objects.filter(stripe_price_id=price_id).first()


def _plan_of_metadata(metadata: dict) -> SubscriptionPlan | None:
    value = str(metadata.get("plan_id") or "")
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return SubscriptionPlan.objects.filter(pk=int(value)).first()


def _organization_id(metadata: dict) -> int | None:
    value = str(metadata.get("organization_id") or "")
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return int(value)


def _organization(organization_id: int) -> Organization:
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        raise EventNotApplicable(f"Organization {organization_id} does not exist.")
    return organization


def invoice_payment_reference(invoice: dict) -> str:
    """The PaymentIntent (or bare charge) that paid an invoice, if the payload names it: its
    `payments` list today, `payment_intent` / `charge` in older API versions. Otherwise
    `invoice_payment.paid` names it (refunds.invoice_payment_paid)."""
    for entry in (invoice.get("payments") or {}).get("data") or []:
        payment = entry.get("payment") or {}
        if entry.get("status", "paid") == "paid":
            found = refunds._id(payment.get("payment_intent")) or refunds._id(payment.get("charge"))
            if found:
                return found
    return refunds._id(invoice.get("payment_intent")) or refunds._id(invoice.get("charge"))


def _lock_subscription(
    stripe_subscription_id: str, *, organization_id: int, plan: SubscriptionPlan
) -> Subscription:
    record, _ = Subscription.objects.get_or_create(
        stripe_subscription_id=stripe_subscription_id,
        defaults={"organization_id": organization_id, "plan": plan},
    )
    record = Subscription.objects.select_for_update(of=("self",)).get(pk=record.pk)
    if record.organization_id != organization_id:
        raise EventNotApplicable(
            f"Subscription {stripe_subscription_id} belongs to organization "
            f"{record.organization_id}, not {organization_id}."
        )
    return record


def lock_invoice(invoice_id: str) -> SubscriptionInvoice:
    """The invoice's row, created if this is the first we hear of it, and locked."""
    SubscriptionInvoice.objects.get_or_create(invoice_id=invoice_id)
    return SubscriptionInvoice.objects.select_for_update(of=("self",)).get(invoice_id=invoice_id)


def _record_invoice(
    row: SubscriptionInvoice, invoice: dict, record: Subscription, paid_at: dt.datetime
) -> None:
    row.subscription = record
    row.billing_reason = invoice.get("billing_reason") or ""
    row.amount_paid_minor = invoice.get("amount_paid") or 0
    row.currency = str(invoice.get("currency") or "").upper() or record.plan.currency
    row.paid_at = paid_at
    row.payment_reference = row.payment_reference or invoice_payment_reference(invoice)
    row.status = row.status or SettledStatus.PAID


# --- Events ----------------------------------------------------------------------------------


def subscription_checkout_completed(*, session: dict) -> None:
    metadata = session.get("metadata") or {}
    plan = _plan_of_metadata(metadata)
    organization_id = _organization_id(metadata)
    subscription_id = refunds._id(session.get("subscription"))
    if plan is None or organization_id is None or not subscription_id:
        raise EventNotApplicable(
            f"Subscription checkout {session.get('id')} names no plan, organization or "
            "subscription."
        )
    _organization(organization_id)
    # Only the link is recorded here; the invoice and subscription events say the rest.
    Subscription.objects.get_or_create(
        stripe_subscription_id=subscription_id,
        defaults={"organization_id": organization_id, "plan": plan},
    )


PERIOD_REASONS = ("subscription_create", "subscription_cycle")
NO_MONEY_NOTE = "Nothing was charged (paid from the customer balance, or discounted): no credits."


def invoice_paid(*, invoice: dict, event: dict) -> None:
    reason = invoice.get("billing_reason")
    if reason in PERIOD_REASONS:
        _period_paid(invoice, event)
    elif reason == "subscription_update":
        _upgrade_paid(invoice, event)


def _period_paid(invoice: dict, event: dict) -> None:
    """A paid period grants its plan's credits: one lot per (subscription, period)."""
    subscription_id, metadata = _subscription_metadata(invoice)
    if not subscription_id:
        return
    invoice_id = refunds._id(invoice.get("id"))
    existing = Subscription.objects.filter(stripe_subscription_id=subscription_id).first()
    line = next((line for line in _lines(invoice) if line.get("period")), {})
    # The line's price first: after an upgrade the subscription's metadata still names the
    # plan it was created with (pending updates take no metadata).
    plan = (
        _plan_of_price(_line_price(line))
        or _plan_of_metadata(metadata)
        or (existing.plan if existing else None)
    )
    organization_id = existing.organization_id if existing else _organization_id(metadata)
    if plan is None or organization_id is None or not invoice_id:
        raise EventNotApplicable(f"Paid invoice {invoice_id} names no known plan or organization.")
    organization = _organization(organization_id)
    currency = str(invoice.get("currency") or plan.currency).upper()
    if currency != plan.currency or plan.currency != organization.currency:
        raise EventNotApplicable(
            f"Invoice {invoice_id} is in {currency}, {plan} in {plan.currency}, the "
            f"organization in {organization.currency}: no credits for it."
        )
    paid = invoice.get("amount_paid")
    if not isinstance(paid, int) or isinstance(paid, bool) or paid < 0:
        raise EventNotApplicable(f"Paid invoice {invoice_id} has no amount_paid.")
    credits = period_credits(paid_minor=paid, plan=plan)
    period = line.get("period") or {}
    start, end = _timestamp(period.get("start")), _timestamp(period.get("end"))
    if start is None:
        raise EventNotApplicable(f"Paid invoice {invoice_id} has no period.")
    paid_at = _timestamp((invoice.get("status_transitions") or {}).get("paid_at"))
    paid_at = paid_at or _created(event)
    with transaction.atomic():
        record = _lock_subscription(subscription_id, organization_id=organization_id, plan=plan)
        # A new subscription whose invoice is paid is active, unless Stripe said something
        # newer since (an ended subscription stays ended: a late redelivery revives nothing).
        if record.status == "incomplete" and _state_applies(record, "active", _created(event)):
            record.status, record.state_as_of = "active", _created(event)
        if record.current_period_start is None or start >= record.current_period_start:
            record.current_period_start, record.current_period_end = start, end
        record.save()
        row = lock_invoice(invoice_id)
        _record_invoice(row, invoice, record, paid_at)
        row.period_start = start
        if row.lot_id is None and not row.note:
            granted = (
                SubscriptionInvoice.objects.filter(
                    subscription=record,
                    period_start=start,
                    billing_reason__in=PERIOD_REASONS,
                    lot__isnull=False,
                )
                .exclude(pk=row.pk)
                .exists()
            )
            if granted:
                row.note = "Another paid invoice of this period already granted its credits."
            elif not credits:
                row.note = NO_MONEY_NOTE
            else:
                try:
                    row.lot = ledger.lot_grant(
                        organization=organization,
                        quantity=credits,
                        source="subscription",
                        invoice_date=paid_at,
                        reference=invoice_id,
                        idempotency_key=(
                            f"stripe:subscription:{subscription_id}:{period.get('start')}"
                        ),
                        expires_not_before=end and end + ledger.RENEWAL_GRACE,
                    )
                except ledger.IdempotencyConflict:
                    # This period's lot was granted for another invoice before these rows
                    # existed: one lot per period, so nothing more.
                    row.note = "This period's credits were granted for another invoice."
        row.save()
    refunds.payment_reconcile(reference=row.payment_reference)


def _upgrade_plans(
    invoice: dict, record: Subscription
) -> tuple[SubscriptionPlan | None, SubscriptionPlan | None]:
    """(new plan, old plan) of a proration invoice: the price charged for the rest of the
    period, and the one credited back for it; else the upgrade recorded when it was asked."""
    charged = sorted(
        (line for line in _lines(invoice) if (line.get("amount") or 0) > 0),
        key=lambda line: line.get("amount") or 0,
        reverse=True,
    )
    credited = [line for line in _lines(invoice) if (line.get("amount") or 0) < 0]
    new = next(filter(None, (_plan_of_price(_line_price(line)) for line in charged)), None)
    old = next(filter(None, (_plan_of_price(_line_price(line)) for line in credited)), None)
    new = new or record.pending_plan
    if old is None and record.plan_id != getattr(new, "pk", None):
        old = record.plan
    return new, old


def credits_paid_for(*, paid_minor: int, plan: SubscriptionPlan) -> int:
    """What `paid_minor` buys at `plan`'s per-credit rate, rounded down."""
    if paid_minor <= 0 or plan.price_minor <= 0:
        return 0
    return paid_minor * plan.credits_per_period // plan.price_minor


def period_credits(*, paid_minor: int, plan: SubscriptionPlan) -> int:
    """A period invoice's credits: the plan's, or fewer if less than its price was charged
    (the customer balance paid the rest, or a discount)."""
    return min(credits_paid_for(paid_minor=paid_minor, plan=plan), plan.credits_per_period)


def upgrade_credits(
    *,
    paid_minor: int,
    new: SubscriptionPlan,
    old: SubscriptionPlan | None,
    remaining: Fraction = Fraction(1),
) -> int:
    """A plan change's credits: what its paid proration buys at the new plan's rate, and
    never more than the difference between the two plans' credits for the `remaining` part
    of the period (both rounded down). A downgrade's difference is negative: nothing."""
    credits = credits_paid_for(paid_minor=paid_minor, plan=new)
    if old is not None:
        difference = new.credits_per_period - old.credits_per_period
        credits = min(credits, math.floor(max(difference, 0) * min(max(remaining, 0), 1)))
    return max(credits, 0)


def _remaining(invoice: dict, record: Subscription) -> Fraction | None:
    """The part of the subscription's current period a proration invoice charges for: its
    charged line's period (from the change to the period's end) over the whole period.
    None if that line is not of the period as recorded (its events are still to come)."""
    start, end = record.current_period_start, record.current_period_end
    line = next((line for line in _lines(invoice) if (line.get("amount") or 0) > 0), {})
    period = line.get("period") or {}
    line_start, line_end = _timestamp(period.get("start")), _timestamp(period.get("end"))
    if None in (start, end, line_start, line_end) or end <= start:
        return None
    if line_end != end or not start <= line_start <= end:
        return None
    return Fraction(int((end - line_start).total_seconds()), int((end - start).total_seconds()))


def _upgrade_paid(invoice: dict, event: dict) -> None:
    """A paid proration invoice (an upgrade, or a downgrade: nothing to pay) grants what it
    paid for, once per invoice, and the new plan is in effect."""
    subscription_id, _ = _subscription_metadata(invoice)
    invoice_id = refunds._id(invoice.get("id"))
    record = (
        Subscription.objects.filter(stripe_subscription_id=subscription_id)
        .select_related("plan", "pending_plan")
        .first()
        if subscription_id
        else None
    )
    if record is None or not invoice_id:
        raise EventNotApplicable(
            f"Proration invoice {invoice_id} of subscription {subscription_id}, not known here."
        )
    new, old = _upgrade_plans(invoice, record)
    paid = invoice.get("amount_paid")
    if new is None and paid == 0 and not any(line.get("amount") for line in _lines(invoice)):
        # A change in the period's last seconds: every line rounds to nothing, so the lines
        # cannot say which plan is new, and there is nothing to grant. The subscription's
        # own events say the plan.
        with transaction.atomic():
            row = lock_invoice(invoice_id)
            _record_invoice(row, invoice, record, _created(event))
            row.note = row.note or NO_MONEY_NOTE
            row.save()
        return
    if new is None:
        raise EventNotApplicable(f"Proration invoice {invoice_id} names no known plan.")
    organization = _organization(record.organization_id)
    currency = str(invoice.get("currency") or new.currency).upper()
    currencies = {currency, new.currency, organization.currency} | (
        {old.currency} if old else set()
    )
    if len(currencies) > 1:
        raise EventNotApplicable(
            f"Proration invoice {invoice_id} mixes currencies ({', '.join(sorted(currencies))}): "
            "a subscription keeps its currency, so it grants no credits."
        )
    if not isinstance(paid, int) or isinstance(paid, bool) or paid < 0:
        raise EventNotApplicable(f"Proration invoice {invoice_id} has no amount_paid.")
    paid_at = _timestamp((invoice.get("status_transitions") or {}).get("paid_at"))
    paid_at = paid_at or _created(event)
    with transaction.atomic():
        record = Subscription.objects.select_for_update(of=("self",)).get(pk=record.pk)
        row = lock_invoice(invoice_id)
        _record_invoice(row, invoice, record, paid_at)
        remaining = _remaining(invoice, record)
        if remaining is not None:
            row.period_start = row.period_start or record.current_period_start
        if row.lot_id is None and not row.note:
            # Decided under the lock: a redelivery finds the lot (or the note) of the first.
            # A period not known yet bounds the credits by the payment alone.
            credits = upgrade_credits(
                paid_minor=paid,
                new=new,
                old=old,
                remaining=Fraction(1) if remaining is None else remaining,
            )
            if credits:
                row.lot = ledger.lot_grant(
                    organization=organization,
                    quantity=credits,
                    source="subscription",
                    invoice_date=paid_at,
                    reference=invoice_id,
                    idempotency_key=f"stripe:upgrade:{invoice_id}",
                    expires_not_before=record.current_period_end
                    and record.current_period_end + ledger.RENEWAL_GRACE,
                )
            elif old is not None and new.credits_per_period <= old.credits_per_period:
                row.note = "A change to a plan with fewer credits: nothing to grant."
            else:
                row.note = NO_MONEY_NOTE
        row.save()
        # Paying the proration applies Stripe's pending update: the new plan is in effect,
        # unless a newer subscription event says otherwise.
        if record.pending_plan_id == new.pk:
            record.pending_plan, record.pending_since = None, None
        if record.status not in Subscription.ENDED_STATUSES and (
            record.state_as_of is None or _created(event) >= record.state_as_of
        ):
            record.plan = new
        record.save()
    refunds.payment_reconcile(reference=row.payment_reference)


def subscription_event(*, obj: dict, event: dict) -> None:
    """customer.subscription.created / updated / deleted: status, plan, item, period and
    cancellation, from the newest event only."""
    subscription_id = refunds._id(obj.get("id"))
    status = obj.get("status")
    if not subscription_id or not isinstance(status, str):
        raise EventNotApplicable("The subscription event names no subscription or status.")
    items = (obj.get("items") or {}).get("data") or [{}]
    item = items[0] or {}
    plan = _plan_of_price(refunds._id(item.get("price")) or refunds._id(item.get("plan")))
    metadata = obj.get("metadata") or {}
    existing = Subscription.objects.filter(stripe_subscription_id=subscription_id).first()
    if existing is None:
        organization_id = _organization_id(metadata)
        plan = plan or _plan_of_metadata(metadata)
        if organization_id is None or plan is None:
            log.warning("subscription %s is not one of ours", subscription_id)
            return
        _organization(organization_id)
    else:
        organization_id = existing.organization_id
    at = _created(event)
    with transaction.atomic():
        record = _lock_subscription(
            subscription_id, organization_id=organization_id, plan=plan or existing.plan
        )
        # The item id never changes with the price, so any event may record it: an upgrade
        # needs it whatever order the events came in.
        record.stripe_item_id = record.stripe_item_id or refunds._id(item.get("id"))
        if _state_applies(record, status, at):
            record.status, record.state_as_of = status, at
            record.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
            start = obj.get("current_period_start") or item.get("current_period_start")
            end = obj.get("current_period_end") or item.get("current_period_end")
            record.current_period_start = _timestamp(start) or record.current_period_start
            record.current_period_end = _timestamp(end) or record.current_period_end
            record.plan = plan or record.plan
            pending_gone = not obj.get("pending_update") and (
                record.pending_since is None or at > record.pending_since
            )
            applied = record.plan_id == record.pending_plan_id
            if record.pending_plan_id and (applied or pending_gone):
                # Applied, or dropped by Stripe because the proration was never paid.
                record.pending_plan, record.pending_since = None, None
        record.save()


# --- What the admin does --------------------------------------------------------------------


def live_subscription(*, organization: Organization) -> Subscription | None:
    return (
        Subscription.objects.filter(
            organization=organization, status__in=Subscription.LIVE_STATUSES
        )
        .select_related("plan", "pending_plan")
        .first()
    )


def subscription_start(
    *, organization: Organization, plan: SubscriptionPlan, request_token: str
) -> str:
    if live_subscription(organization=organization) is not None:
        raise PurchaseRefused("You already have a subscription: upgrade it instead.")
    # One that is not live yet (its first payment incomplete, unpaid or paused) would become
    # a second paying subscription if both went through.
    unfinished = (
        Subscription.objects.filter(organization=organization)
        .exclude(status__in=Subscription.ENDED_STATUSES)
        .exists()
    )
    if unfinished:
        raise PurchaseRefused(
            "Your subscription's first payment is not complete yet: finish it in the Stripe "
            "customer portal, or wait until it expires, before subscribing again."
        )
    if not plan.active or plan.currency != organization.currency:
        raise PurchaseRefused("That plan is not available.")
    return stripe_gateway.subscription_checkout_create(organization, plan, request_token)


# Stripe drops a pending update whose invoice is not paid within 23 hours: after this, a
# request never confirmed by an event no longer blocks a new one.
PENDING_LAPSES_AFTER = dt.timedelta(hours=24)


def _currency_refusal(plan: SubscriptionPlan, current: SubscriptionPlan, organization) -> str:
    if plan.currency == current.currency == organization.currency:
        return ""
    return (
        f"{plan} is billed in {plan.currency}, your subscription in {current.currency}. A "
        f"subscription keeps its currency: choose a plan in {current.currency}."
    )


def subscription_upgrade(
    *, organization: Organization, plan: SubscriptionPlan, actor: User
) -> Subscription:
    """Ask Stripe to move to a bigger tier of the same interval and currency. Nothing is
    granted here: the credits come when Stripe says the proration invoice is paid.

    One change at a time: the request is claimed first (`pending_plan`, committed, no lock
    held while Stripe is asked) and its Stripe idempotency key names that claim. The same
    change asked again (a double click, a second tab) finds the claim and is not sent
    twice; another change waits until this one is paid or lapses; each new claim is a new
    key, so a change asked again after the subscription moved on is never answered with an
    old reply. A request Stripe did not accept gives its claim back."""
    subscription = live_subscription(organization=organization)
    if subscription is None:
        raise PurchaseRefused("There is no subscription to upgrade.")
    current = subscription.plan
    refusal = _currency_refusal(plan, current, organization)
    if refusal:
        raise PurchaseRefused(refusal)
    if plan.interval != current.interval or plan.rank <= current.rank or not plan.active:
        raise PurchaseRefused(f"{plan} is not an upgrade of {current}.")
    now = timezone.now()
    lapsed = now - PENDING_LAPSES_AFTER
    claimed = (
        Subscription.objects.filter(pk=subscription.pk, plan=current)
        .filter(Q(pending_plan__isnull=True) | Q(pending_since__lte=lapsed))
        .update(pending_plan=plan, pending_since=now)
    )
    if not claimed:
        subscription = live_subscription(organization=organization) or subscription
        if subscription.pending_plan_id == plan.pk:
            return subscription  # asked already; its payment is awaited
        if subscription.pending_plan_id:
            raise PurchaseRefused(
                f"An upgrade to {subscription.pending_plan} is waiting for its payment. "
                "Once Stripe confirms it (or drops it, a day later), you can change again."
            )
        raise PurchaseRefused(
            f"Your subscription changed meanwhile (it is on {subscription.plan} now). "
            "Look at it again before you choose."
        )
    try:
        _ask_stripe_to_change(subscription, current=current, plan=plan)
    except BaseException:
        Subscription.objects.filter(
            pk=subscription.pk, pending_plan=plan, pending_since=now
        ).update(pending_plan=None, pending_since=None)
        raise
    subscription.pending_plan, subscription.pending_since = plan, now
    return subscription


def _ask_stripe_to_change(
    subscription: Subscription,
    *,
    current: SubscriptionPlan,
    plan: SubscriptionPlan,
) -> None:
    # The key is new with each claim (not made of a clock or a state, which two changes
    # can share): the SDK's own retries of this request reuse it, nothing else does.
    if not subscription.stripe_item_id and not stripe_gateway.simulated():
        # Not seen in an event yet: the subscription itself names its item.
        remote = stripe_gateway.subscription_retrieve(subscription.stripe_subscription_id)
        items = (remote.get("items") or {}).get("data") or []
        item_id = refunds._id((items[0] if items else {}).get("id"))
        if not item_id:
            raise PurchaseRefused("Stripe did not say what this subscription is for; try again.")
        Subscription.objects.filter(pk=subscription.pk, stripe_item_id="").update(
            stripe_item_id=item_id
        )
        subscription.stripe_item_id = item_id
    stripe_gateway.subscription_change_plan(
        subscription, plan, request_key=f"{current.pk}-{plan.pk}:{uuid.uuid4().hex}"
    )


def subscription_cancel(*, organization: Organization) -> Subscription:
    subscription = live_subscription(organization=organization)
    if subscription is None:
        raise PurchaseRefused("There is no subscription to cancel.")
    stripe_gateway.subscription_cancel_at_period_end(subscription)
    Subscription.objects.filter(pk=subscription.pk).update(cancel_at_period_end=True)
    subscription.cancel_at_period_end = True
    return subscription
