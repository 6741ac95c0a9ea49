"""Credits bought, used and expired per calendar month, from the daily totals.

Months are local to a time zone; `DailyTotal` days are UTC. A local month boundary falls
inside a UTC day unless the zone's offset is a whole number of days (UTC itself), so each
month is the UTC days wholly inside it, read from the daily totals, plus the part of each
split day that belongs to it, read from the ledger: one UTC day of entries per boundary, by
the transactions' (organization, created_at) index. Two queries, however long the history.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.core.cache import cache
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.models import Organization

from . import rules
from .models import DailyTotal, LedgerEntry, LedgerTransaction

# The groups of credits.rules, as this chart counts them: bought is the gains of its kinds;
# used is the losses of consumption and of support's deductions, less everything reversals
# gave back; expired counts restorations back against revocations.
BOUGHT_KINDS = rules.BOUGHT_KINDS  # their gains
USED_KINDS = (*rules.REVERSIBLE_KINDS, LedgerTransaction.Kind.ADJUST)  # their losses
REVERSE_KIND = LedgerTransaction.Kind.REVERSE
EXPIRED_KINDS = rules.EXPIRED_OR_REVOKED_KINDS
COUNTED_KINDS = (*BOUGHT_KINDS, *USED_KINDS, REVERSE_KIND, *EXPIRED_KINDS)


@dataclass(frozen=True)
class MonthFlow:
    month: dt.date
    bought: int
    used: int
    expired: int


def monthly_flows(
    *,
    organization: Organization,
    months: int = 12,
    now: dt.datetime | None = None,
    zone: dt.tzinfo | None = None,
) -> list[MonthFlow]:
    """Credits bought, used and expired in each of the last `months` calendar months of
    `zone` (the active time zone unless given), oldest first, months with no movement
    included. The current month counts all of its entries, as the entry-by-entry
    grouping does."""
    if months < 1:
        return []
    zone = zone or timezone.get_current_timezone()
    now = (now or timezone.now()).astimezone(zone)
    first = now.year * 12 + now.month - 1 - (months - 1)
    firsts = [dt.date(index // 12, index % 12 + 1, 1) for index in range(first, first + months + 1)]
    # Each month is [bounds[i], bounds[i + 1]): local midnight on its first day. A midnight
    # that a daylight-saving change skips reads with the offset before it, which is the
    # instant the day begins.
    bounds = [dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC) for day in firsts]
    # A month that has ended never changes (entries are written at the time they happen and
    # never altered), so its figures are kept in the cache and only the current month, and
    # any month not cached yet, is read: a page view reads about a month of rows, not a
    # year's. Without Redis every month is read, as before.
    ended = [month for month, end in zip(firsts, bounds[1:], strict=False) if end <= now]
    keys = {month: _cache_key(organization.pk, zone, month) for month in ended}
    cached = _cache_get(list(keys.values()))
    known = {month: cached[key] for month, key in keys.items() if key in cached}
    missing = [index for index, month in enumerate(firsts[:-1]) if month not in known]
    if missing:
        lo, hi = missing[0], missing[-1] + 1
        read = _totals(organization, firsts[lo : hi + 1], bounds[lo : hi + 1], zone)
        _cache_set({keys[month]: read[month] for month in read if month in keys})
        known |= read
    return [
        MonthFlow(month, known[month][0], -known[month][1], -known[month][2])
        for month in firsts[:-1]
    ]


# Long enough to serve a year of page views; an entry is never written into an ended month.
MONTH_CACHE_SECONDS = 400 * 24 * 3600


def _cache_key(organization_id: int, zone: dt.tzinfo, month: dt.date) -> str:
    return f"credits:month-flows:{organization_id}:{getattr(zone, 'key', zone)}:{month:%Y-%m}"


def _cache_get(keys: list[str]) -> dict:
    try:
        return cache.get_many(keys) if keys else {}
    except RedisError:
        return {}


def _cache_set(values: dict) -> None:
    with contextlib.suppress(RedisError):
        if values:
            cache.set_many(values, timeout=MONTH_CACHE_SECONDS)


def _totals(
    organization: Organization,
    firsts: list[dt.date],
    bounds: list[dt.datetime],
    zone: dt.tzinfo,
) -> dict[dt.date, tuple[int, int, int]]:
    """Bought, used and expired (as the entries sign them) in each month [bounds[i],
    bounds[i + 1]), from the daily totals and the entries of the UTC days a month boundary
    splits."""
    split = sorted({bound.date() for bound in bounds if bound.time() != dt.time()})
    totals = {month: [0, 0, 0] for month in firsts[:-1]}

    def add(month: dt.date, bought: int, used: int, expired: int) -> None:
        figures = totals[month]
        figures[0] += bought
        figures[1] += used
        figures[2] += expired

    whole_from = _ceil_day(bounds[0])
    whole_to = bounds[-1].date()  # exclusive: the day the last month ends in, or after it
    days = (
        DailyTotal.objects.filter(
            organization_id=organization.pk,
            day__gte=whole_from,
            day__lt=whole_to,
            kind__in=COUNTED_KINDS,
        )
        .exclude(day__in=split)
        .values("day")
        .annotate(**_day_sums())
        .values_list("day", "bought", "used", "expired")
    )
    for day, bought, used, expired in days:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        add(firsts[bisect.bisect_right(bounds, start) - 1], bought, used, expired)

    if split:
        # The split days' entries, grouped by local month exactly as the ledger's own
        # grouping would: entries before the first month or after the last are left out.
        ranges = []
        for day in split:
            day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            start = max(day_start, bounds[0])
            end = min(day_start + dt.timedelta(days=1), bounds[-1])
            ranges.append(
                Q(
                    transaction__created_at__gte=start,
                    transaction__created_at__lt=end,
                    created_at__gte=start,
                    created_at__lt=end,
                )
            )
        entries = (
            LedgerEntry.objects.filter(
                reduce(or_, ranges),
                transaction__organization_id=organization.pk,
                transaction__kind__in=COUNTED_KINDS,
            )
            .annotate(month=TruncMonth("created_at", tzinfo=zone))
            .values("month")
            .annotate(**_entry_sums())
            .values_list("month", "bought", "used", "expired")
        )
        for month, bought, used, expired in entries:
            if month.date() in totals:
                add(month.date(), bought, used, expired)

    return {month: tuple(figures) for month, figures in totals.items()}


def _ceil_day(instant: dt.datetime) -> dt.date:
    """The first UTC day that starts at or after `instant`."""
    day = instant.date()
    return day if instant.time() == dt.time() else day + dt.timedelta(days=1)


def _day_sums() -> dict:
    """bought, used (negative) and expired (negative) of daily totals rows."""
    both = F("gained") + F("lost")
    return {
        "bought": Coalesce(Sum("gained", filter=Q(kind__in=BOUGHT_KINDS)), 0),
        "used": Coalesce(Sum("lost", filter=Q(kind__in=USED_KINDS)), 0)
        + Coalesce(Sum(both, filter=Q(kind=REVERSE_KIND)), 0),
        "expired": Coalesce(Sum(both, filter=Q(kind__in=EXPIRED_KINDS)), 0),
    }


def _entry_sums() -> dict:
    """The same figures of ledger entries (gains and losses told apart by their sign)."""
    return {
        "bought": Coalesce(
            Sum("quantity", filter=Q(transaction__kind__in=BOUGHT_KINDS, quantity__gt=0)), 0
        ),
        "used": Coalesce(
            Sum(
                "quantity",
                filter=Q(transaction__kind__in=USED_KINDS, quantity__lt=0)
                | Q(transaction__kind=REVERSE_KIND),
            ),
            0,
        ),
        "expired": Coalesce(Sum("quantity", filter=Q(transaction__kind__in=EXPIRED_KINDS)), 0),
    }
