"""Overage (seed 002): credits used beyond the balance, billed per calendar month of the
organization's own time zone, at the list price, on one Stripe invoice per organization and
month.

Months are local: November of an organization in Los Angeles ends at midnight there (08:00
UTC on December 1), not at midnight UTC. The job runs hourly and bills each organization
once its month has ended where it is; it reads the small `OverageDue` table (organizations
with unbilled overage, kept by a trigger) rather than every organization or overage row.

No lock is held while Stripe is asked. First, in one short transaction, an
`OverageInvoice` row (state `invoicing`) is created and the month's unbilled overage rows
are claimed for it; then Stripe is asked, with keys per organization and month
(`overage:<org>:<YYYY-MM>:item` / `:invoice`), so a retry bills nothing twice; then, in a
second transaction, the rows are marked billed with the invoice's id. A run that stopped
after the first step is finished by the next one. Months left unbilled (the job was down, a
price list was missing) are billed one invoice per month, oldest first.

An organization whose currency has no price list cannot be put on `bill_overage`
(`policy_refusal`, used by the admin form). One that is anyway (its price list deleted, an
edit outside the admin) is logged at error level on every hourly run and emailed to staff
once a day (`unbillable_alert`); its overage stays recorded and is billed, month by month,
once a price list for its currency exists.

What Stripe later says of the invoice's payment (`invoice.paid`, `invoice.payment_failed`)
is recorded on the same row: a failed payment is shown to the organization's admins on the
Billing page and to staff in the admin.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Organization
from credits import services as ledger
from credits.models import Overage, OverageDue
from outbox.services import NewMessage, messages_enqueue

from . import pricing, stripe_gateway
from .models import OverageInvoice, PriceList

log = logging.getLogger(__name__)

OVERAGE_UNBILLABLE = "overage_unbillable"


class _NothingToBill(Exception):
    """Rolls back the invoice row made for a month with no overage."""


def _month_start(zone: str, at: dt.datetime) -> dt.datetime:
    """Midnight on the first of the month `at` falls in, in `zone`."""
    local = at.astimezone(zoneinfo.ZoneInfo(zone))
    # fold=0: in a repeated hour at midnight, the first of the two.
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0, fold=0)


def _month_after(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _month_bounds(zone: str, month: str) -> tuple[dt.datetime, dt.datetime]:
    """The instants a local calendar month (YYYY-MM) starts and ends."""
    first = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=zoneinfo.ZoneInfo(zone))
    following = dt.datetime.strptime(_month_after(month), "%Y-%m")
    return first, following.replace(tzinfo=zoneinfo.ZoneInfo(zone))


def month_name(month: str) -> str:
    """ "2026-11" as people read it: "November 2026"."""
    return dt.datetime.strptime(month, "%Y-%m").strftime("%B %Y")


def overage_month_start(*, organization: Organization, now: dt.datetime | None = None):
    """Midnight on the first of the current month where the organization is: overage before
    it belongs to months that are over."""
    return _month_start(organization.time_zone, now or timezone.now())


def organizations_due(*, now: dt.datetime | None = None) -> list[int]:
    """The organizations with unbilled overage from a month that has ended in their own
    time zone. One row per organization with unbilled overage is read; an organization whose
    overage is all from its current month is not due (nothing to queue every hour)."""
    now = now or timezone.now()
    rows = OverageDue.objects.values_list(
        "organization_id", "organization__time_zone", "since"
    ).order_by("organization_id")
    return [pk for pk, zone, since in rows if since < _month_start(zone, now)]


def policy_refusal(*, when_short: str, currency: str) -> str | None:
    """Why an organization may not have this policy in this currency, or None. Overage is
    billed at the list price of the organization's currency: without a price list in it,
    nothing could ever be billed."""
    if when_short != Organization.WhenShort.BILL_OVERAGE:
        return None
    if PriceList.objects.filter(currency=currency).exists():
        return None
    return (
        f"There is no {currency} price list, so overage in {currency} could not be billed. "
        f"Add a {currency} price list first, or keep \u201cBlock and offer to buy\u201d."
    )


def unbillable_organizations():
    """Organizations whose overage cannot be billed: on `bill_overage`, or with overage not
    yet billed, in a currency without a price list."""
    due = OverageDue.objects.values("organization_id")
    return (
        Organization.objects.filter(
            Q(when_short=Organization.WhenShort.BILL_OVERAGE) | Q(pk__in=due)
        )
        .exclude(currency__in=PriceList.objects.values("currency"))
        .order_by("pk")
    )


def unbillable_alert(*, now: dt.datetime | None = None) -> list[int]:
    """Logs each unbillable organization at error level (every run) and emails staff about
    it once a day (the outbox key holds the day). Returns their ids."""
    organizations = list(unbillable_organizations())
    if not organizations:
        return []
    day = (now or timezone.now()).astimezone(dt.UTC).date()
    staff = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .values_list("email", flat=True)
    )
    messages = []
    for organization in organizations:
        unbilled = sum(
            Overage.objects.filter(organization=organization, billed_at__isnull=True).values_list(
                "quantity", flat=True
            )
        )
        log.error(
            "overage of %s (id %s) cannot be billed: no %s price list "
            "(policy %s, %s credits of overage unbilled)",
            organization,
            organization.pk,
            organization.currency,
            organization.when_short,
            unbilled,
        )
        context = {"organization": organization, "unbilled": unbilled}
        messages.append(
            NewMessage(
                key=f"billing.overage-unbillable:{organization.pk}:{day}",
                to=staff,
                subject=f"Overage of {organization.name} cannot be billed: "
                f"no {organization.currency} price list",
                text=render_to_string(f"emails/{OVERAGE_UNBILLABLE}.txt", context).strip() + "\n",
                kind=OVERAGE_UNBILLABLE,
            )
        )
    if staff:
        with transaction.atomic():
            messages_enqueue(messages=messages)
    return [organization.pk for organization in organizations]


def overage_invoice(*, organization_id: int, now: dt.datetime | None = None) -> str | None:
    """Bill the organization's unbilled overage of the local months that are over, one
    Stripe invoice per month at the list price, once. Returns the id of the last invoice
    this run billed, or None if there was nothing (left) to bill."""
    organization = Organization.objects.get(pk=organization_id)
    before = overage_month_start(organization=organization, now=now)
    current = before.strftime("%Y-%m")
    billed = None
    # Months whose Stripe request never went through are finished first: their amounts
    # are fixed already, price list or not.
    for stuck in OverageInvoice.objects.filter(
        organization=organization, status=OverageInvoice.Status.INVOICING
    ).order_by("month"):
        billed = _invoice_send(stuck)
    price_list = pricing.price_list_for(organization.currency)
    if price_list is None:
        # Staff hear of it from the hourly job (`unbillable_alert`); the rows stay unbilled
        # and are billed month by month once a price list exists.
        log.error("no %s price list to bill overage of %s", organization.currency, organization)
        return billed
    while (month := _month_to_bill(organization, before=before, current=current)) is not None:
        try:
            record = _invoice_claim(organization, month=month, price_list=price_list)
        except _NothingToBill:
            break  # a concurrent run claimed the rows: it bills them
        if record.status == OverageInvoice.Status.INVOICING:
            billed = _invoice_send(record)
    ledger.overage_due_refresh(organization=organization)
    return billed


def _month_to_bill(organization: Organization, *, before: dt.datetime, current: str) -> str | None:
    """The next local month to invoice: that of the oldest overage not yet claimed, or, for
    overage whose month has an invoice already (the organization changed its time zone),
    the month after the last invoice. None once that is the current month."""
    oldest = (
        Overage.objects.filter(
            organization=organization,
            billed_at__isnull=True,
            invoice_reference="",
            created_at__lt=before,
        )
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if oldest is None:
        return None
    month = _month_start(organization.time_zone, oldest).strftime("%Y-%m")
    last = (
        OverageInvoice.objects.filter(organization=organization)
        .order_by("-month")
        .values_list("month", flat=True)
        .first()
    )
    if last is not None and month <= last:
        month = _month_after(last)
    return month if month < current else None


def _invoice_claim(organization: Organization, *, month: str, price_list) -> OverageInvoice:
    """Step one: the month's invoice row and the claim on its overage rows, committed."""
    _, end = _month_bounds(organization.time_zone, month)
    with transaction.atomic():
        # The unique (organization, month) row makes a concurrent run wait here, then
        # find this one's claim.
        record, created = OverageInvoice.objects.get_or_create(
            organization=organization,
            month=month,
            defaults={"quantity": 0, "amount_minor": 0, "currency": organization.currency},
        )
        if created:
            # Every row of earlier months is claimed already, so this claims the month's.
            # One invoice is one Stripe charge: what does not fit waits for the next one.
            most = pricing.STRIPE_MAX_CHARGE_MINOR // max(price_list.list_price_minor, 1)
            quantity = ledger.overage_claim(
                organization=organization, before=end, claim=record.claim, most=most
            )
            if not quantity:
                raise _NothingToBill
            record.quantity = quantity
            record.amount_minor = quantity * price_list.list_price_minor
            record.save(update_fields=["quantity", "amount_minor"])
    return record


def _invoice_send(record: OverageInvoice) -> str:
    """Steps two and three: ask Stripe (no transaction open), then record."""
    organization = Organization.objects.get(pk=record.organization_id)
    invoice_id = stripe_gateway.overage_invoice_create(
        organization,
        quantity=record.quantity,
        amount_minor=record.amount_minor,
        currency=record.currency,
        month=record.month,
        description=(
            f"Overage {month_name(record.month)} ({organization.time_zone}): "
            f"{record.quantity:,} credits at the list price"
        ),
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
