"""Stripe's webhook events: verified by the view, stored here, answered, then processed.

1. `event_store` keeps a verified event once by its id (a redelivery, or a concurrent
   duplicate, finds the first row and is not queued again) and queues its processing after
   the row commits; the view then answers 200. Nothing a handler does can turn into a 500
   for Stripe, nor roll the stored event back.
2. `event_process` (the task billing.tasks.stripe_event_process, `acks_late`, bounded
   retries with exponential backoff) runs the event's handler. A handler that raises leaves
   the event `failed` with its error and its number of attempts; a retry (the task's own,
   support's "Process again" in the admin, or `stripe_events_requeue`) applies it once the
   cause is fixed.

Handlers run outside any transaction of their own choosing: each opens its short ones
(billing/refunds.py describes the lock order), and each is idempotent, so an event applied
twice (a retry after a crash, two runs at once) changes nothing the second time. They never
depend on the order events arrive in: see checkout.py, subscriptions.py, refunds.py and
overage.py for how each keeps to that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import autotopup, checkout, overage, refunds, subscriptions
from .errors import EventNotApplicable
from .models import StripeEvent

log = logging.getLogger(__name__)


def _event_time(event: dict) -> dt.datetime:
    return dt.datetime.fromtimestamp(event["created"], tz=dt.UTC)


def _checkout_completed(obj: dict, event: dict) -> None:
    if obj.get("mode") == "setup":
        autotopup.setup_completed(session=obj)
    elif obj.get("mode") == "subscription":
        subscriptions.subscription_checkout_completed(session=obj)
    else:
        checkout.checkout_session_fulfil(session=obj, paid_at=_event_time(event))


def _invoice_paid(obj: dict, event: dict) -> None:
    if overage.is_overage_invoice(obj):
        overage.invoice_paid(invoice=obj, event=event)
    else:
        subscriptions.invoice_paid(invoice=obj, event=event)


def _invoice_payment_failed(obj: dict, event: dict) -> None:
    # Subscriptions hear of a failed renewal from customer.subscription.updated (past_due).
    if overage.is_overage_invoice(obj):
        overage.invoice_payment_failed(invoice=obj, event=event)


def _invoice_payment_paid(obj: dict, event: dict) -> None:
    """invoice_payment.paid names the PaymentIntent that paid an invoice: what lets a refund
    of a subscription invoice find its period's lot."""
    invoice_id = refunds._id(obj.get("invoice"))
    payment = obj.get("payment") or {}
    reference = refunds._id(payment.get("payment_intent")) or refunds._id(payment.get("charge"))
    if not invoice_id or not reference:
        raise EventNotApplicable("The invoice payment names no invoice or payment.")
    with transaction.atomic():
        row = subscriptions.lock_invoice(invoice_id)
        if not row.payment_reference:
            row.payment_reference = reference
            row.save(update_fields=["payment_reference"])
    refunds.payment_reconcile(reference=row.payment_reference)


HANDLERS: dict[str, Callable[[dict, dict], object]] = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": lambda obj, event: checkout.checkout_session_fulfil(
        session=obj, paid_at=_event_time(event)
    ),
    "checkout.session.async_payment_failed": lambda obj, event: checkout.checkout_session_fail(
        session=obj
    ),
    "checkout.session.expired": lambda obj, event: checkout.checkout_session_expire(session=obj),
    "payment_intent.succeeded": lambda obj, event: (
        autotopup.payment_succeeded(intent=obj, paid_at=_event_time(event))
        if (obj.get("metadata") or {}).get("auto_top_up")
        else None
    ),
    "payment_intent.payment_failed": lambda obj, event: (
        autotopup.payment_failed(intent=obj)
        if (obj.get("metadata") or {}).get("auto_top_up")
        else None
    ),
    "charge.refunded": refunds.charge_refunded,
    "charge.dispute.created": refunds.dispute_changed,
    "charge.dispute.updated": refunds.dispute_changed,
    "charge.dispute.closed": refunds.dispute_changed,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    "invoice_payment.paid": _invoice_payment_paid,
    "customer.subscription.created": lambda obj, event: subscriptions.subscription_event(
        obj=obj, event=event
    ),
    "customer.subscription.updated": lambda obj, event: subscriptions.subscription_event(
        obj=obj, event=event
    ),
    "customer.subscription.deleted": lambda obj, event: subscriptions.subscription_event(
        obj=obj, event=event
    ),
}


def _without_nul(value):
    """PostgreSQL's jsonb holds no NUL character: a signed payload carrying one is kept
    with it removed rather than refused."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _problem(event) -> str:
    """What makes a signed payload unprocessable, or ""."""
    if not isinstance(event, dict):
        return "The payload is not a JSON object."
    event_id, type_ = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        return "The event has no usable id."
    if not isinstance(type_, str) or not 0 < len(type_) <= 100:
        return "The event has no usable type."
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 < created < 2**37:
        return "The event has no usable creation time."
    if not isinstance((event.get("data") or {}).get("object"), dict):
        return "The event carries no object."
    return ""


def event_store(*, body: bytes) -> tuple[StripeEvent, bool]:
    """Keep a verified event; (row, True) if it is new, and then its processing is queued
    for after the row commits. A payload that cannot be processed at all (not an object, no
    id, no object) is kept too, `failed` with the reason, for support to see."""
    try:
        event = _without_nul(json.loads(body))
    except (ValueError, RecursionError):
        event = {"unparsed": body.decode("utf-8", "replace").replace("\x00", "")}
    problem = _problem(event)
    event_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        # Without an id of its own, the same payload sent again still finds its row.
        event_id = "malformed:" + hashlib.sha256(body).hexdigest()
    type_ = event.get("type") if isinstance(event, dict) else None
    defaults = {
        "type": type_ if isinstance(type_, str) and len(type_) <= 100 else "malformed",
        "payload": event if isinstance(event, dict) else {"payload": event},
        "created": None if problem else _event_time(event),
        "status": StripeEvent.Status.FAILED if problem else StripeEvent.Status.PENDING,
        "last_error": problem,
    }
    with transaction.atomic():
        # A concurrent delivery of the same id waits on the unique index until this
        # commits, then finds this row.
        record, created = StripeEvent.objects.get_or_create(event_id=event_id, defaults=defaults)
    if created and not problem:
        enqueue(record.pk)
    return record, created


def enqueue(event_pk: int) -> None:
    """Queue an event's processing once the current transaction commits. `robust`: if the
    broker is down the event stays `pending` and `stripe_events_requeue` sends it later; the
    webhook still answers 200."""
    from .tasks import stripe_event_process

    transaction.on_commit(lambda: stripe_event_process.delay(event_pk), robust=True)


def event_process(*, event_pk: int) -> bool:
    """Apply a stored event. Returns False if it was processed already (or is unknown).
    A handler that raises leaves the event `failed` with its error, and the error goes on to
    the caller (the task retries it)."""
    record = StripeEvent.objects.filter(pk=event_pk).first()
    if record is None or record.status == StripeEvent.Status.PROCESSED:
        return False
    StripeEvent.objects.filter(pk=event_pk).update(attempts=F("attempts") + 1)
    problem = _problem(record.payload)
    try:
        if problem:
            raise EventNotApplicable(problem)
        handler = HANDLERS.get(record.type)
        if handler is not None:
            handler(record.payload["data"]["object"], record.payload)
    except Exception as error:
        log.warning("Stripe event %s (%s) failed: %s", record.event_id, record.type, error)
        StripeEvent.objects.filter(pk=event_pk).exclude(status=StripeEvent.Status.PROCESSED).update(
            status=StripeEvent.Status.FAILED, last_error=_describe(error)
        )
        raise
    StripeEvent.objects.filter(pk=event_pk).update(
        status=StripeEvent.Status.PROCESSED, processed_at=timezone.now(), last_error=""
    )
    return True


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:4000]


def events_requeue(*, older_than: dt.timedelta = dt.timedelta(minutes=10)) -> int:
    """Queue again the events still `pending` a while after they arrived: their first queuing
    was lost (the broker down when the webhook answered). Failed events are retried by their
    task's own backoff, then by support."""
    cutoff = timezone.now() - older_than
    ids = list(
        StripeEvent.objects.filter(
            status=StripeEvent.Status.PENDING, received_at__lt=cutoff
        ).values_list("pk", flat=True)[:1000]
    )
    for pk in ids:
        enqueue(pk)
    return len(ids)
