"""The finance report (issue 18, part 2): for each month, in the organization's time zone,
the credits that came in, were consumed, expired and were revoked, and what was outstanding
at its end, in credits and in money at each lot's own cost basis.

A lot's cost basis is what was paid for it: its purchase's amount, or its subscription
invoice's; grants, goodwill and support's additions cost nothing. An entry's money is its
credits times that lot's price per credit, rounded to a millionth of a minor unit once, per
entry; every figure is a sum of those, so the month's identity

    opening + added - consumed - expired - revoked = closing

holds exactly, in credits and in money, and the closing money is the organization's prepaid
balance (the vendor's deferred revenue). Transfers between an organization's accounts net
to zero and are left out; holds write no entries.

The buckets, by transaction kind (credits/rules.py places every kind):
- added: grants (purchases, subscriptions, grants), goodwill, and support's positive
  adjustments;
- consumed: redemptions and captures, less what reversals gave back;
- expired: expiries (breakage);
- revoked: revocations (refunds, disputes), less restorations, and support's deductions.

One query over the organization's entries, grouped by month: a report, read from the
replica where there is one (the view's `replica_reads`), not a page of the hot path."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db import connections

from accounts.models import Organization
from billing.currencies import minor_unit_exponent
from config.db_router import REPLICA_DB_ALIAS, reading_from_replica

from . import rules

BUCKETS = ("added", "consumed", "expired", "revoked")

_MONTHS_SQL = """
WITH cost AS (
    SELECT l.id, l.quantity,
           COALESCE(p.amount_minor, s.amount_paid_minor, 0)::numeric AS paid
    FROM credits_lot l
    LEFT JOIN billing_purchase p ON p.lot_id = l.id
    LEFT JOIN billing_subscriptioninvoice s ON s.lot_id = l.id
    WHERE l.organization_id = %(organization)s
), entries AS (
    SELECT date_trunc('month', e.created_at AT TIME ZONE %(zone)s)::date AS month,
           CASE
               -- An adjustment goes either way: its gains came in, its losses left.
               WHEN t.kind = 'adjust' THEN CASE WHEN e.quantity > 0 THEN 'added' ELSE 'revoked' END
               WHEN t.kind = ANY(%(bought)s) THEN 'added'
               WHEN t.kind = ANY(%(used)s) THEN 'consumed'
               WHEN t.kind = 'expire' THEN 'expired'
               WHEN t.kind = ANY(%(left)s) THEN 'revoked'
           END AS bucket,
           e.quantity,
           round(e.quantity * c.paid / c.quantity, 6) AS money
    FROM credits_ledgerentry e
    JOIN credits_ledgertransaction t ON t.id = e.transaction_id
    JOIN cost c ON c.id = e.lot_id
    -- The other kinds write no entries (holds, releases, extensions), or entries that net
    -- to zero for the organization (transfers).
    WHERE t.organization_id = %(organization)s
      AND t.kind = ANY(%(counted)s)
)
SELECT month, bucket, SUM(quantity), SUM(money) FROM entries GROUP BY month, bucket
ORDER BY month
"""


@dataclass(frozen=True)
class Figure:
    credits: int
    money: Decimal  # minor units of the organization's currency, to a millionth
    # Decimals of one minor unit in that currency: 2 for USD, 0 for JPY, 3 for BHD.
    exponent: int = 2

    @property
    def money_major(self) -> Decimal:
        """In the currency's major units (dollars, yen, dinars), to its smallest unit."""
        return self.money.scaleb(-self.exponent).quantize(Decimal(1).scaleb(-self.exponent))


@dataclass(frozen=True)
class Month:
    month: dt.date  # its first day
    opening: Figure
    added: Figure
    consumed: Figure
    expired: Figure
    revoked: Figure
    closing: Figure


def finance_months(*, organization: Organization) -> list[Month]:
    """Every month from the organization's first entry to its last, oldest first (months
    without entries included, so that each opening is the month before's closing)."""
    alias = REPLICA_DB_ALIAS if reading_from_replica() else "default"
    with connections[alias].cursor() as cursor:
        cursor.execute(
            _MONTHS_SQL,
            {
                "organization": organization.pk,
                "zone": organization.time_zone,
                # The kind groups of credits/rules.py, the same as every other figure's.
                "bought": list(rules.BOUGHT_KINDS),
                "used": list(rules.USED_KINDS),
                "left": list(rules.EXPIRED_OR_REVOKED_KINDS),
                "counted": [
                    *rules.BOUGHT_KINDS,
                    *rules.USED_KINDS,
                    *rules.EXPIRED_OR_REVOKED_KINDS,
                ],
            },
        )
        rows = cursor.fetchall()
    if not rows:
        return []
    exponent = minor_unit_exponent(organization.currency)
    flows: dict[dt.date, dict[str, Figure]] = {}
    for month, bucket, credits, money in rows:
        flows.setdefault(month, {})[bucket] = Figure(int(credits), Decimal(money), exponent)
    months, month = [], rows[0][0]
    last = rows[-1][0]
    balance = Figure(0, Decimal(0), exponent)
    zero = Figure(0, Decimal(0), exponent)
    while month <= last:
        got = flows.get(month, {})
        signed = {bucket: got.get(bucket, zero) for bucket in BUCKETS}
        closing = Figure(
            balance.credits + sum(f.credits for f in signed.values()),
            balance.money + sum((f.money for f in signed.values()), Decimal(0)),
            exponent,
        )
        # Outflows are stored as the entries' negative sums: shown as positive figures.
        months.append(
            Month(
                month=month,
                opening=balance,
                added=signed["added"],
                consumed=Figure(-signed["consumed"].credits, -signed["consumed"].money, exponent),
                expired=Figure(-signed["expired"].credits, -signed["expired"].money, exponent),
                revoked=Figure(-signed["revoked"].credits, -signed["revoked"].money, exponent),
                closing=closing,
            )
        )
        balance = closing
        month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return months
