"""Overage (seed 002): credits used beyond the balance, billed monthly at the list price on
one Stripe invoice per organization and month.

No lock is held while Stripe is asked. First, in one short transaction, an
`OverageInvoice` row (state `invoicing`) is created and the month's unbilled overage rows
are claimed for it; then Stripe is asked, with keys per organization and month
(`overage:<org>:<YYYY-MM>:item` / `:invoice`), so a retry bills nothing twice; then, in a
second transaction, the rows are marked billed with the invoice's id. A run that stopped
after the first step is finished by the next one.

What Stripe later says of the invoice's payment (`invoice.paid`, `invoice.payment_failed`)
is recorded on the same row: a failed payment is shown to the organization's admins on the
Billing page and to staff in the admin.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from credits import services as ledger

from . import pricing, stripe_gateway
from .models import OverageInvoice

log = logging.getLogger(__name__)


class _NothingToBill(Exception):
    """Rolls back the invoice row made for a month with no overage."""


def overage_month_start(*, organization: Organization, now: dt.datetime | None = None):
    """Midnight on the first of the current month where the organization is: overage before
    it belongs to months that are over."""
    local = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(organization.time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def overage_invoice(*, organization_id: int, now: dt.datetime | None = None) -> str | None:
    """Put the organization's unbilled overage of past months on one Stripe invoice at the
    list price, once. Returns the invoice id this run billed, or None if there was nothing
    (left) to bill."""
    organization = Organization.objects.get(pk=organization_id)
    before = overage_month_start(organization=organization, now=now)
    month = (before - dt.timedelta(days=1)).strftime("%Y-%m")
    # Earlier months whose Stripe request never went through are finished first.
    for stuck in OverageInvoice.objects.filter(
        organization=organization, status=OverageInvoice.Status.INVOICING
    ).exclude(month=month):
        _invoice_send(stuck)
    price_list = pricing.price_list_for(organization.currency)
    if price_list is None:
        log.error("no %s price list to bill overage of %s", organization.currency, organization)
        return None
    try:
        with transaction.atomic():
            # The unique (organization, month) row makes a concurrent run wait here, then
            # find this one's claim.
            record, created = OverageInvoice.objects.get_or_create(
                organization=organization,
                month=month,
                defaults={"quantity": 0, "amount_minor": 0, "currency": organization.currency},
            )
            if created:
                quantity = ledger.overage_claim(
                    organization=organization, before=before, claim=record.claim
                )
                if not quantity:
                    raise _NothingToBill
                record.quantity = quantity
                record.amount_minor = quantity * price_list.list_price_minor
                record.save(update_fields=["quantity", "amount_minor"])
    except _NothingToBill:
        return None
    if record.status != OverageInvoice.Status.INVOICING:
        return None  # billed already
    return _invoice_send(record)


def _invoice_send(record: OverageInvoice) -> str:
    """Steps two and three: ask Stripe (no transaction open), then record."""
    organization = Organization.objects.get(pk=record.organization_id)
    invoice_id = stripe_gateway.overage_invoice_create(
        organization,
        quantity=record.quantity,
        amount_minor=record.amount_minor,
        currency=record.currency,
        month=record.month,
    )
    with transaction.atomic():
        ledger.overage_mark_claimed_billed(
            organization=organization, claim=record.claim, invoice_reference=invoice_id
        )
        # The invoice's own events may have come first and said more (paid, failed).
        OverageInvoice.objects.filter(pk=record.pk, status=OverageInvoice.Status.INVOICING).update(
            status=OverageInvoice.Status.OPEN, stripe_invoice_id=invoice_id
        )
    return invoice_id


def is_overage_invoice(invoice: dict) -> bool:
    return bool((invoice.get("metadata") or {}).get("overage_month"))


def _locked_record(invoice: dict) -> OverageInvoice | None:
    metadata = invoice.get("metadata") or {}
    rows = OverageInvoice.objects.select_for_update(of=("self",))
    record = rows.filter(stripe_invoice_id=invoice.get("id")).first() if invoice.get("id") else None
    organization_id = str(metadata.get("organization_id") or "")
    if record is None and organization_id.isascii() and organization_id.isdigit():
        record = rows.filter(
            organization_id=int(organization_id[:18]), month=str(metadata.get("overage_month"))
        ).first()
    return record


def _mark_billed(record: OverageInvoice) -> None:
    """The invoice exists at Stripe: its claimed rows are billed, even if the run that made it
    stopped before it could say so."""
    if record.stripe_invoice_id:
        ledger.overage_mark_claimed_billed(
            organization=record.organization,
            claim=record.claim,
            invoice_reference=record.stripe_invoice_id,
        )


def _created(event: dict) -> dt.datetime:
    return dt.datetime.fromtimestamp(event["created"], tz=dt.UTC)


def invoice_paid(*, invoice: dict, event: dict) -> None:
    with transaction.atomic():
        record = _locked_record(invoice)
        if record is None:
            log.warning("paid overage invoice %s matches no overage", invoice.get("id"))
            return
        record.status = OverageInvoice.Status.PAID
        record.stripe_invoice_id = record.stripe_invoice_id or str(invoice.get("id") or "")
        _mark_billed(record)
        record.paid_at = record.paid_at or _created(event)
        record.hosted_invoice_url = invoice.get("hosted_invoice_url") or record.hosted_invoice_url
        record.status_as_of = max(filter(None, [record.status_as_of, _created(event)]))
        record.save()


def invoice_payment_failed(*, invoice: dict, event: dict) -> None:
    """Recorded for the admin to see and pay; a payment that succeeds later wins, whatever
    the order its events arrive in."""
    with transaction.atomic():
        record = _locked_record(invoice)
        if record is None:
            log.warning("failed overage invoice %s matches no overage", invoice.get("id"))
            return
        at = _created(event)
        record.stripe_invoice_id = record.stripe_invoice_id or str(invoice.get("id") or "")
        _mark_billed(record)
        record.hosted_invoice_url = invoice.get("hosted_invoice_url") or record.hosted_invoice_url
        attempts = invoice.get("attempt_count")
        if isinstance(attempts, int) and attempts >= record.attempt_count:
            record.attempt_count = attempts
            next_attempt = invoice.get("next_payment_attempt")
            record.next_payment_attempt = (
                dt.datetime.fromtimestamp(next_attempt, tz=dt.UTC)
                if isinstance(next_attempt, int)
                else None
            )
        if record.status != OverageInvoice.Status.PAID:
            record.status = OverageInvoice.Status.PAYMENT_FAILED
            record.failed_at = max(filter(None, [record.failed_at, at]))
            record.status_as_of = max(filter(None, [record.status_as_of, at]))
        record.save()


def failed_overage_invoices(*, organization: Organization):
    return OverageInvoice.objects.filter(
        organization=organization, status=OverageInvoice.Status.PAYMENT_FAILED
    ).order_by("-month")
