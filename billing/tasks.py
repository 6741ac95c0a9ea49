"""Thin tasks: ids in, a service call, idempotent (safe to run twice or at once)."""

import logging

import stripe
from celery import shared_task

from . import autotopup, checkout, overage, webhooks

log = logging.getLogger(__name__)


# Acknowledged only once it ran (a worker lost mid-event hands it back); retried with
# exponential backoff (30 s, 1 min, 2 min, then every 5 min, with jitter), eight times, after
# which the event waits, failed, for support (and the requeue beat job). The wait stays
# below the broker's visibility timeout: a retry waiting longer would be handed to a second
# worker too, and every copy would schedule retries of its own.
@shared_task(
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=30,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def stripe_event_process(event_pk: int) -> bool:
    return webhooks.event_process(event_pk=event_pk)


@shared_task
def stripe_events_requeue() -> int:
    """Events left `pending` because their queuing was lost (the broker was down)."""
    return webhooks.events_requeue()


@shared_task(acks_late=True)
def purchase_invoice_url(purchase_id: int) -> str:
    """Best effort after a purchase's lot committed: its Stripe-hosted invoice address."""
    return checkout.purchase_invoice_url_fetch(purchase_id=purchase_id)


@shared_task
def overage_invoices_monthly() -> int:
    """Beat, hourly (the name is older than the schedule): one invoice task per
    organization whose local month has ended with overage unbilled, so each is billed in
    the hour after its own midnight on the 1st and is not due again once billed. Tasks are
    idempotent: a late, repeated or concurrent run bills nothing twice. Also logs, and
    emails staff about, overage that cannot be billed (no price list in its currency)."""
    overage.unbillable_alert()
    organization_ids = overage.organizations_due()
    for queued, organization_id in enumerate(organization_ids):
        try:
            overage_invoice.delay(organization_id)
        except Exception as error:  # kombu, redis or socket errors alike
            # The rest stay due: the next hourly run queues them again.
            log.warning("overage_invoice not queued (%s: %s)", type(error).__name__, error)
            return queued
    return len(organization_ids)


@shared_task(autoretry_for=(Exception,), retry_backoff=60, max_retries=5)
def overage_invoice(organization_id: int) -> str | None:
    return overage.overage_invoice(organization_id=organization_id)


# Acknowledged once it ran; the PaymentIntent is keyed by the purchase, so a task delivered
# twice, or retried after a time-out, charges once.
@shared_task(
    acks_late=True,
    autoretry_for=(stripe.StripeError,),
    retry_backoff=30,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def auto_top_up_charge(purchase_id: int) -> str:
    return autotopup.auto_top_up_charge(purchase_id=purchase_id)


@shared_task
def auto_top_ups_check() -> int:
    return autotopup.auto_top_ups_check()
