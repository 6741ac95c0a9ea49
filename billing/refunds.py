"""Refunds and disputes, in whatever order Stripe's events arrive.

All sales are final, but Stripe may still refund or dispute a payment. The credits it
bought are revoked in proportion to the money taken back, never below zero (credits spent
stay spent) and never twice; a dispute that is won gives its revocation back.

- `charge.refunded` carries the charge's cumulative `amount_refunded`: the largest figure
  seen is kept on the payment's `Payment` row, and a new refund revokes only the increment,
  `ceil(lot quantity * refunded / amount)` less what was revoked before (rounded up: the
  organization never keeps credits it was refunded). A full refund revokes the whole lot.
- A dispute revokes `ceil(lot quantity * disputed / paid)` once, while it is open or lost;
  won, it is restored (`lot_restore`, which gives back exactly what that revocation took).
- A refund or dispute of a payment not known here yet (it arrived before the checkout or
  invoice event) is parked on its `Payment` row and applied by `payment_reconcile`, which
  the fulfilment calls once the payment's lot exists.

Lock order, everywhere in billing: (1) the `Payment` row, then its `Dispute` rows; (2) the
row that granted the lot (`Purchase`, or `Subscription` then `SubscriptionInvoice`); (3)
the ledger (its own order). Nothing takes (1) while holding (2): a fulfilment commits its
grant, then reconciles the payment in a second transaction.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction

from credits import services as ledger

from .errors import EventNotApplicable
from .models import Dispute, Payment, Purchase, SettledStatus, SubscriptionInvoice

log = logging.getLogger(__name__)

# A dispute closed in the customer's favour of the merchant, or an inquiry that never became
# a dispute: the money stays, so do the credits.
RESOLVED_FOR_US = ("won", "warning_closed", "prevented")


def _created(event: dict) -> dt.datetime:
    return dt.datetime.fromtimestamp(event["created"], tz=dt.UTC)


def _id(value) -> str:
    """An expandable field: an id, or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _amount(obj: dict, field: str) -> int:
    value = obj.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EventNotApplicable(f"{obj.get('object') or 'object'} {obj.get('id')}: no {field}")
    return value


def _lock_payment(reference: str) -> Payment:
    """The payment's row, created if this is the first we hear of it, and locked. Everyone
    who links a payment to its lot or records a refund or dispute of it goes through here
    first, so they take turns."""
    Payment.objects.get_or_create(reference=reference)
    return Payment.objects.select_for_update(of=("self",)).get(reference=reference)


def charge_refunded(charge: dict, event: dict) -> None:
    reference = _id(charge.get("payment_intent")) or _id(charge.get("id"))
    if not reference:
        raise EventNotApplicable("The refunded charge names no payment.")
    amount, refunded = _amount(charge, "amount"), _amount(charge, "amount_refunded")
    if refunded > amount:
        raise EventNotApplicable(f"Charge {charge.get('id')}: refunded more than its amount.")
    with transaction.atomic():
        payment = _lock_payment(reference)
        payment.charge_id = payment.charge_id or _id(charge.get("id"))
        payment.currency = payment.currency or str(charge.get("currency") or "").upper()
        payment.amount_minor = amount
        payment.refunded_minor = max(payment.refunded_minor, refunded)
        payment.save()
        _apply(payment)


def _dispute_status_newer(row: Dispute, status: str, at: dt.datetime) -> bool:
    """Whether a dispute event's status replaces the one recorded: a closed status beats an
    open one whatever their times (a late `created` never reopens it); otherwise the newer
    event wins."""
    if row.status in Dispute.CLOSED and status not in Dispute.CLOSED:
        return False
    if status in Dispute.CLOSED and row.status not in Dispute.CLOSED:
        return True
    return row.status_as_of is None or at >= row.status_as_of


def dispute_changed(dispute: dict, event: dict) -> None:
    """charge.dispute.created / updated / closed."""
    dispute_id = _id(dispute.get("id"))
    reference = _id(dispute.get("payment_intent")) or _id(dispute.get("charge"))
    status = dispute.get("status")
    if not dispute_id or not reference or not isinstance(status, str):
        raise EventNotApplicable("The dispute names no id, payment or status.")
    amount = _amount(dispute, "amount")
    currency = str(dispute.get("currency") or "").upper()
    at = _created(event)
    with transaction.atomic():
        payment = _lock_payment(reference)
        if not payment.charge_id and _id(dispute.get("charge")):
            payment.charge_id = _id(dispute.get("charge"))
            payment.save(update_fields=["charge_id", "updated_at"])
        row, created = Dispute.objects.get_or_create(
            dispute_id=dispute_id,
            defaults={
                "payment": payment,
                "amount_minor": amount,
                "currency": currency,
                "status": status,
                "status_as_of": at,
            },
        )
        row = Dispute.objects.select_for_update(of=("self",)).get(pk=row.pk)
        if not created and _dispute_status_newer(row, status, at):
            row.status, row.status_as_of = status, at
            row.save(update_fields=["status", "status_as_of"])
        _apply(payment)


def payment_reconcile(*, reference: str) -> None:
    """Apply what is parked for a payment whose lot is now known (or check again that it
    all is applied: it is idempotent). Its own transaction, after the grant committed.

    It creates the payment's row if there is none rather than only looking for one: a
    refund being recorded at this moment has inserted that row without committing it, and
    the insert here waits for it (a plain read would miss it, and the refund, which looked
    for the grant before it committed, would stay parked for ever)."""
    if not reference:
        return
    with transaction.atomic():
        _apply(_lock_payment(reference))


def _grant(reference: str) -> Purchase | SubscriptionInvoice | None:
    """The row that granted the lot this payment paid for, locked (step 2 of the order)."""
    purchase = (
        Purchase.objects.select_for_update(of=("self",))
        .filter(payment_intent_id=reference, lot__isnull=False)
        .select_related("lot")
        .first()
    )
    if purchase is not None:
        return purchase
    return (
        SubscriptionInvoice.objects.select_for_update(of=("self",))
        .filter(payment_reference=reference, lot__isnull=False)
        .select_related("lot")
        .first()
    )


def _ceil_share(quantity: int, part: int, whole: int) -> int:
    return min(quantity, -(-quantity * part // whole)) if whole > 0 else quantity


def _apply(payment: Payment) -> None:
    """Bring the lot in line with what Stripe says about the payment. Call with the payment
    locked; revocations and restorations carry keys of their own, so a replay adds nothing."""
    disputes = list(payment.disputes.select_for_update(of=("self",)).order_by("pk"))
    if not payment.refunded_minor and not disputes:
        return
    grant = _grant(payment.reference)
    if grant is None:
        return  # parked: the fulfilment of this payment reconciles it
    lot = grant.lot
    if isinstance(grant, Purchase):
        paid, currency = grant.amount_minor, grant.currency
    else:
        paid, currency = grant.amount_paid_minor, grant.currency
    for currency_seen in [payment.currency if payment.refunded_minor else ""] + [
        dispute.currency for dispute in disputes
    ]:
        if currency_seen and currency and currency_seen != currency:
            raise EventNotApplicable(
                f"Payment {payment.reference} is in {currency}, its refund or dispute in "
                f"{currency_seen}."
            )
    base = payment.amount_minor or paid
    if payment.refunded_minor:
        target = _ceil_share(lot.quantity, payment.refunded_minor, base)
        if target > payment.refund_credits:
            if target == lot.quantity:
                ledger.lot_revoke(
                    lot=lot,
                    reason="Stripe: charge refunded",
                    idempotency_key=f"stripe:revoke:{lot.pk}",
                )
            else:
                ledger.lot_revoke(
                    lot=lot,
                    quantity=target - payment.refund_credits,
                    reason=f"Stripe: partial refund ({payment.refunded_minor} of {base} "
                    f"{currency or payment.currency})",
                    idempotency_key=f"stripe:refund:{lot.pk}:{target}",
                )
            payment.refund_credits = target
            payment.save(update_fields=["refund_credits", "updated_at"])
    for dispute in disputes:
        if dispute.withholds and dispute.revocation_id is None:
            credits = _ceil_share(lot.quantity, dispute.amount_minor, paid)
            if credits:
                dispute.revocation = ledger.lot_revoke(
                    lot=lot,
                    quantity=credits,
                    reason="Stripe: payment disputed",
                    idempotency_key=f"stripe:dispute:{dispute.dispute_id}",
                )
                dispute.save(update_fields=["revocation"])
        elif (
            dispute.status in RESOLVED_FOR_US
            and dispute.revocation_id is not None
            and dispute.restoration_id is None
        ):
            dispute.restoration = ledger.lot_restore(
                revocation=dispute.revocation, reason="Stripe: dispute won"
            )
            dispute.save(update_fields=["restoration"])
    _settle(grant, payment, disputes, base)


def _settle(grant, payment: Payment, disputes: list[Dispute], base: int) -> None:
    if any(dispute.withholds for dispute in disputes):
        status = SettledStatus.DISPUTED
    elif payment.refunded_minor >= base:
        status = SettledStatus.REFUNDED
    elif payment.refunded_minor:
        status = SettledStatus.PARTIALLY_REFUNDED
    else:
        status = SettledStatus.PAID
    if grant.status == status:
        return
    if isinstance(grant, Purchase):
        grant.mark_settled(status)
    else:
        grant.status = status
    grant.save(update_fields=["status"])
