"""What the read models must agree with: the Billing chart's months and the forecast computed
from every ledger entry, as the pages did before the daily totals and the stored forecast.
They read all history on each call, so no page uses them; the tests compare the read models
with them."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Min, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from accounts.models import Organization
from credits.forecast import MIN_HISTORY_DAYS, WINDOW_DAYS, Forecast, _project
from credits.models import LedgerEntry
from credits.rules import USED_KINDS


@dataclass(frozen=True)
class MonthFlow:
    month: dt.date
    bought: int
    used: int
    expired: int


def monthly_flows_by_every_entry(
    *, organization: Organization, months: int = 12, now: dt.datetime | None = None
) -> list[MonthFlow]:
    """Credits bought, used and expired in each of the last `months` calendar months (in the
    active time zone), oldest first, months with no movement included."""
    now = timezone.localtime(now or timezone.now())
    # The first day of the month `months - 1` calendar months ago, at local midnight.
    index = now.year * 12 + now.month - 1 - (months - 1)
    start = now.replace(
        year=index // 12, month=index % 12 + 1, day=1, hour=0, minute=0, second=0, microsecond=0
    )
    rows = (
        LedgerEntry.objects.filter(account__organization=organization, created_at__gte=start)
        .annotate(month=TruncMonth("created_at"))
        .values("month")
        .annotate(
            bought=Coalesce(
                Sum(
                    "quantity", filter=Q(transaction__kind__in=["grant", "adjust"], quantity__gt=0)
                ),
                0,
            ),
            # A reversal gives use back: its entries count against what was used.
            used=Coalesce(
                Sum(
                    "quantity",
                    filter=Q(transaction__kind__in=["redeem", "capture", "adjust"], quantity__lt=0)
                    | Q(transaction__kind="reverse"),
                ),
                0,
            ),
            # A restoration gives a revocation back: it counts against what was revoked.
            expired=Coalesce(
                Sum("quantity", filter=Q(transaction__kind__in=["expire", "revoke", "restore"])),
                0,
            ),
        )
    )
    by_month = {row["month"].date(): row for row in rows}
    flows = []
    month = start.date()
    for _ in range(months):
        row = by_month.get(month, {})
        flows.append(
            MonthFlow(month, row.get("bought", 0), -row.get("used", 0), -row.get("expired", 0))
        )
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return flows


def forecast_by_every_entry(
    *, organization: Organization, now: dt.datetime | None = None
) -> Forecast:
    """The forecast read from every entry, in the active time zone (the projection itself is
    the module's own: only the rate and the history's length are read differently)."""
    now = now or timezone.now()
    entries = LedgerEntry.objects.filter(account__organization=organization)
    first = entries.aggregate(first=Min("created_at"))["first"]
    used = -(
        entries.filter(
            Q(transaction__kind__in=USED_KINDS),
            created_at__gte=now - dt.timedelta(days=WINDOW_DAYS),
        ).aggregate(total=Sum("quantity"))["total"]
        or 0
    )
    history_days = (now - first).days if first else 0
    if used <= 0 or history_days < MIN_HISTORY_DAYS:
        return Forecast(enough_history=False)
    return _project(organization.pk, rate=used / min(WINDOW_DAYS, history_days), now=now)
