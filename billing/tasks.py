"""Thin tasks: ids in, a service call, idempotent (safe to run twice or at once)."""

from celery import shared_task

from credits.models import Overage

from . import services


@shared_task
def overage_invoices_monthly() -> int:
    """Beat, on the 1st: one invoice task per organization with unbilled overage."""
    organization_ids = set(
        Overage.objects.filter(billed_at__isnull=True).values_list("organization_id", flat=True)
    )
    for organization_id in organization_ids:
        overage_invoice.delay(organization_id)
    return len(organization_ids)


@shared_task(autoretry_for=(Exception,), retry_backoff=60, max_retries=5)
def overage_invoice(organization_id: int) -> str | None:
    return services.overage_invoice(organization_id=organization_id)
