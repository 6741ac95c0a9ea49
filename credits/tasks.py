"""Thin periodic tasks (Celery beat): ids in, a service call; idempotent and safe to run
twice or at once (acks_late and time limits come from the settings)."""

import logging
import time

from celery import shared_task
from django.conf import settings

from . import alerts, forecast, services

log = logging.getLogger(__name__)

# Share of the soft time limit an expiry run may use before it stops between batches and
# queues its continuation: a backlog larger than one run (beat stopped for a day, a first
# deploy) is worked through by consecutive tasks, each keeping what it did, instead of one
# task killed at its limit.
EXPIRY_TIME_SHARE = 0.75


def _queue(task, *args) -> bool:
    """Queue a follow-up; a broker that cannot take it is logged, not raised: each task
    queued from here is also run by beat on its schedule, which catches up."""
    try:
        task.delay(*args)
    except Exception as error:  # kombu, redis or socket errors alike
        log.warning(
            "%s%r not queued (%s: %s); beat runs it again on schedule",
            task.name,
            args,
            type(error).__name__,
            error,
        )
        return False
    return True


@shared_task
def expire_lots() -> int:
    deadline = time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT * EXPIRY_TIME_SHARE
    expired = services.lots_expire(deadline=deadline)
    if time.monotonic() >= deadline:
        _queue(expire_lots)  # lots may still be due: carry on now rather than in an hour
    return expired


@shared_task
def balance_alerts() -> int:
    organization_ids = alerts.organizations_with_credits()
    for queued, organization_id in enumerate(organization_ids):
        if not _queue(balance_alert, organization_id):
            return queued  # the broker is gone: the next hourly run checks them all again
    return len(organization_ids)


@shared_task
def balance_alert(organization_id: int) -> list[str]:
    return alerts.balance_check(organization_id=organization_id)


@shared_task
def expiry_reminders() -> int:
    return alerts.expiry_reminders_send()


@shared_task
def ledger_audit_nightly() -> bool:
    return alerts.nightly_audit()


@shared_task
def forecasts_refresh() -> int:
    """Beat's hourly run: one forecast_refresh per organization whose forecast can change."""
    organization_ids = forecast.organizations_to_refresh()
    for queued, organization_id in enumerate(organization_ids):
        if not _queue(forecast_refresh, organization_id):
            return queued  # the broker is gone: the next hourly run queues them all again
    return len(organization_ids)


@shared_task
def forecast_refresh(organization_id: int) -> bool:
    return forecast.forecast_refresh(organization_id=organization_id) is not None
