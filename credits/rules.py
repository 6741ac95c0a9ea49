"""The ledger's rules that several readers and writers need, each defined once for Python:

- whether a lot is usable at an instant (`lot_usable`);
- the order lots are consumed in (`CONSUMPTION_ORDER`, `consumption_order`);
- which transaction kinds count as credits bought, used, or expired and revoked.

The ledger's SQL has its own copy of the first two, because PostgreSQL runs them where no
Python is: the function `credits_lot_usable` (credits/sql/credits_lot_usable.sql) and the
order in which credits_take reads the index holding_live_order (credits/sql/credits_take.sql).
tests/credits/test_rules.py proves each pair gives the same answers, so neither can drift.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import F, Q
from django.db.models.expressions import OrderBy

from .models import LedgerTransaction

Kind = LedgerTransaction.Kind


def lot_usable(at: dt.datetime, prefix: str = "") -> Q:
    """Lots usable at `at`: neither marked expired nor revoked, and not past their expiry. A
    lot is worth nothing from its `expires_at` on, before the hourly job marks it expired.

    `prefix` reaches the lot from another model: `lot_usable(now, "lot__")` on holdings or
    entries. Plain lookups rather than a call of credits_lot_usable: the ORM's query stays
    readable to the planner without relying on the function being inlined, and it runs on a
    database at any migration."""
    return Q(**{f"{prefix}expired_at__isnull": True, f"{prefix}revoked_at__isnull": True}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": at})
    )


# The consumption order, by the lot's columns: earliest expiry first and lots that never
# expire (NULL) last, then the oldest invoice, then the lot's id, so that no tie is left to
# chance. A reversal gives credits back in the opposite order.
_ORDER_COLUMNS = ("expires_at", "invoiced_at", "id")


def consumption_order(prefix: str = "", *, reverse: bool = False) -> tuple[OrderBy, ...]:
    """The consumption order for `.order_by(*...)`, on lots or through `prefix` ("lot__");
    `reverse` for the order a reversal gives credits back in (never-expiring lots first)."""
    expiry, *rest = (F(prefix + column) for column in _ORDER_COLUMNS)
    if reverse:
        return (expiry.desc(nulls_first=True), *(column.desc() for column in rest))
    return (expiry.asc(nulls_last=True), *(column.asc() for column in rest))


CONSUMPTION_ORDER = consumption_order()


def consumption_order_sql(alias: str, *, reverse: bool = False) -> str:
    """The same order as an SQL ORDER BY list over the lot table under `alias`, for the
    ledger's raw queries (e.g. "l.expires_at ASC NULLS LAST, l.invoiced_at ASC, l.id ASC")."""
    direction, nulls = ("DESC", "NULLS FIRST") if reverse else ("ASC", "NULLS LAST")
    expiry, *rest = (f"{alias}.{column}" for column in _ORDER_COLUMNS)
    return ", ".join([f"{expiry} {direction} {nulls}", *(f"{c} {direction}" for c in rest)])


# --- Kind groups ---------------------------------------------------------------------------
# Which transactions' entries make up the figures people are shown. Tuples, so they serve as
# `kind__in=` and as SQL arrays (`kind = ANY(%s)`) alike.

# Credits that came in: grants (purchases, subscription periods, grants), support's
# additions and goodwill (given at no cost). An adjustment goes either way: only its positive
# entries were bought.
BOUGHT_KINDS = (Kind.GRANT, Kind.ADJUST, Kind.GOODWILL)

# What a reversal can give back: a redemption or the start of an assignment.
REVERSIBLE_KINDS = (Kind.REDEEM, Kind.CAPTURE)

# Credits used: consumption, and reversals, whose entries count back against it. A support
# deduction (an adjustment's negative entries) is use too where a figure counts it (the
# monthly flows do; an account's own "used" figure does not).
USED_KINDS = (*REVERSIBLE_KINDS, Kind.REVERSE)

# Credits that left with their lot: expiry, revocation (refunds, disputes), and restorations,
# whose entries give a revocation back.
EXPIRED_OR_REVOKED_KINDS = (Kind.EXPIRE, Kind.REVOKE, Kind.RESTORE)

# In none of the groups: holds, their releases and expiry extensions write no entries, and a
# transfer moves credits between accounts of one organization (its entries net to zero for
# it). Every kind is in exactly one group (a test says so), so a new kind has to be placed.
NEUTRAL_KINDS = (Kind.HOLD, Kind.RELEASE, Kind.TRANSFER, Kind.EXTEND)
