"""Thin periodic tasks (Celery beat): ids in, a service call; idempotent and safe to run
twice or at once (acks_late and time limits come from the settings)."""

from celery import shared_task

from . import alerts, services


@shared_task
def expire_lots() -> int:
    return services.lots_expire()


@shared_task
def balance_alerts() -> int:
    organization_ids = alerts.organizations_with_credits()
    for organization_id in organization_ids:
        balance_alert.delay(organization_id)
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
