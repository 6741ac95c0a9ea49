"""When will the credits run out? From the last 90 days' redemptions and the lots'
scheduled expiries: consumption takes the earliest-expiring lots first, like the ledger.

Computed by beat, not by the page: `forecast_refresh` (hourly, credits.tasks) reads the daily
totals and the pool's live lots, projects day by day and stores the result in
`StoredForecast`; the dashboard reads that one row (`stored_forecast`). Days are the
organization's own (its time zone), the same for every viewer, since one row serves them all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import zoneinfo
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection
from django.db.models import Exists, F, Min, OuterRef, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.models import Organization

from . import rules
from .models import Account, DailyTotal, Holding, LedgerEntry, StoredForecast
from .rules import USED_KINDS  # redemptions and captures, less what reversals gave back

log = logging.getLogger(__name__)

WINDOW_DAYS = 90
MIN_HISTORY_DAYS = 14
HORIZON_DAYS = 730
CHART_WIDTH, CHART_HEIGHT = 600, 120
# While a refresh the dashboard asked for is on its way, other requests do not ask again.
# Longer than a queued task normally waits; short enough that a task the broker lost is
# asked for again long before the next hourly run.
REFRESH_REQUEST_SECONDS = 600


@dataclass(frozen=True)
class Forecast:
    enough_history: bool
    daily_rate: float = 0.0
    runs_out_on: dt.date | None = None
    expires_unused: int = 0
    points: tuple[tuple[dt.date, int], ...] = ()
    # When beat computed it (None for a forecast computed on the spot).
    computed_at: dt.datetime | None = None

    @property
    def polyline(self) -> str:
        """The projected balance as SVG polyline points."""
        if not self.points:
            return ""
        peak = max(balance for _, balance in self.points) or 1
        step = CHART_WIDTH / max(len(self.points) - 1, 1)
        return " ".join(
            f"{i * step:.1f},{CHART_HEIGHT - CHART_HEIGHT * balance / peak:.1f}"
            for i, (_, balance) in enumerate(self.points)
        )

    @classmethod
    def from_stored(cls, row: StoredForecast) -> Forecast:
        return cls(
            enough_history=row.enough_history,
            daily_rate=row.daily_rate,
            runs_out_on=row.runs_out_on,
            expires_unused=row.expires_unused,
            points=tuple((dt.date.fromisoformat(day), balance) for day, balance in row.points),
            computed_at=row.computed_at,
        )


# --- The dashboard's side: one row, never a computation -------------------------------------


def stored_forecast(*, organization: Organization) -> Forecast | None:
    """The forecast beat last stored for the organization; None before its first run."""
    row = StoredForecast.objects.filter(organization_id=organization.pk).first()
    return Forecast.from_stored(row) if row is not None else None


def forecast_refresh_request(*, organization_id: int) -> bool:
    """Queue one refresh for an organization that has no stored forecast yet. Many requests
    may see it missing at once: the first to claim the key in Redis queues it, the rest
    leave it (until REFRESH_REQUEST_SECONDS have passed). True when this call queued it.

    Never raises: without Redis or the broker the page says the forecast is being prepared
    all the same, and the hourly run writes it."""
    from . import tasks  # tasks imports this module

    claim = f"forecast-refresh-requested:{organization_id}"
    try:
        if not cache.add(claim, 1, timeout=REFRESH_REQUEST_SECONDS):
            return False
    except RedisError as error:
        log.warning("forecast refresh of %s not requested (%s)", organization_id, error)
        return False
    try:
        tasks.forecast_refresh.delay(organization_id)
    except Exception as error:  # kombu, redis or socket errors alike
        log.warning("forecast refresh of %s not queued (%s)", organization_id, error)
        # Let the next request try again rather than wait out the claim.
        with contextlib.suppress(RedisError):
            cache.delete(claim)
        return False
    return True


# --- Beat's side ----------------------------------------------------------------------------


def organizations_to_refresh(*, now: dt.datetime | None = None) -> list[int]:
    """The organizations whose forecast the hourly run recomputes: those with use in the
    window (only they can have a forecast with enough history), and those whose stored
    forecast still says they have (so it turns into "too little history" once their use
    has left the window). Any other organization's forecast is "too little history" and
    stays so until it uses credits; one that has none stored gets it when its dashboard
    first asks.

    Index probes per organization (daily totals by organization and day, the stored row by
    its key), not a scan of holdings or entries."""
    now = now or timezone.now()
    since = (now - dt.timedelta(days=WINDOW_DAYS)).astimezone(dt.UTC).date()
    used = DailyTotal.objects.filter(
        organization_id=OuterRef("pk"), day__gte=since, kind__in=USED_KINDS
    )
    said_enough = StoredForecast.objects.filter(organization_id=OuterRef("pk"), enough_history=True)
    return list(
        Organization.objects.filter(Exists(used) | Exists(said_enough))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def forecast_refresh(
    *, organization_id: int, now: dt.datetime | None = None
) -> StoredForecast | None:
    """Compute the organization's forecast at `now` and store it (one upsert). A forecast
    stored from a later `now` is kept: two runs at once, or a late retry, never put an older
    projection over a newer one. None for an organization that no longer exists."""
    now = now or timezone.now()
    zone_name = (
        Organization.objects.filter(pk=organization_id).values_list("time_zone", flat=True).first()
    )
    if zone_name is None:
        return None
    with timezone.override(zoneinfo.ZoneInfo(zone_name)):
        result = forecast_compute(organization_id=organization_id, now=now)
    points = [[day.isoformat(), balance] for day, balance in result.points]
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT_SQL,
            {
                "organization": organization_id,
                "computed_at": now,
                "enough_history": result.enough_history,
                "daily_rate": result.daily_rate,
                "runs_out_on": result.runs_out_on,
                "expires_unused": result.expires_unused,
                "points": json.dumps(points),
            },
        )
    return StoredForecast.objects.filter(organization_id=organization_id).first()


_UPSERT_SQL = """
INSERT INTO credits_storedforecast AS f
    (organization_id, computed_at, enough_history, daily_rate, runs_out_on, expires_unused,
     points)
VALUES (%(organization)s, %(computed_at)s, %(enough_history)s, %(daily_rate)s,
        %(runs_out_on)s, %(expires_unused)s, %(points)s::jsonb)
ON CONFLICT (organization_id) DO UPDATE SET
    computed_at = EXCLUDED.computed_at, enough_history = EXCLUDED.enough_history,
    daily_rate = EXCLUDED.daily_rate, runs_out_on = EXCLUDED.runs_out_on,
    expires_unused = EXCLUDED.expires_unused, points = EXCLUDED.points
WHERE f.computed_at <= EXCLUDED.computed_at
"""


def forecast_compute(*, organization_id: int, now: dt.datetime) -> Forecast:
    """The forecast at `now` from the daily totals, in the active time zone's days.

    The same figures as reading every entry (`forecast`, below), at the cost of a few days'
    rows: the first entry and the window's first day are the only UTC days read from the
    ledger itself, each by the transactions' (organization, created_at) index."""
    first = _first_entry_at(organization_id)
    history_days = (now - first).days if first else 0
    used = -_used_since(organization_id, now - dt.timedelta(days=WINDOW_DAYS))
    if used <= 0 or history_days < MIN_HISTORY_DAYS:
        return Forecast(enough_history=False)
    return _project(organization_id, rate=used / min(WINDOW_DAYS, history_days), now=now)


def _utc_day(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def _entries_between(organization_id: int, start: dt.datetime, end: dt.datetime):
    # Entries carry their transaction's time, so bounding both lets PostgreSQL find the
    # transactions by index and their entries by transaction.
    return LedgerEntry.objects.filter(
        transaction__organization_id=organization_id,
        transaction__created_at__gte=start,
        transaction__created_at__lt=end,
        created_at__gte=start,
        created_at__lt=end,
    )


def _first_entry_at(organization_id: int) -> dt.datetime | None:
    """When the organization's first entry was written: its UTC day from the daily totals,
    the instant within that day from the ledger."""
    day = DailyTotal.objects.filter(organization_id=organization_id).aggregate(day=Min("day"))[
        "day"
    ]
    if day is None:
        return None
    start, end = _utc_day(day)
    first = _entries_between(organization_id, start, end).aggregate(first=Min("created_at"))
    return first["first"] or start


def _used_since(organization_id: int, since: dt.datetime) -> int:
    """The sum of the used kinds' entries written at or after `since` (negative: use less
    what reversals gave back), later entries included as the entry-by-entry sum has it."""
    _, split_end = _utc_day(since.astimezone(dt.UTC).date())
    whole_days = DailyTotal.objects.filter(
        organization_id=organization_id, kind__in=USED_KINDS, day__gte=split_end.date()
    ).aggregate(total=Sum(F("gained") + F("lost")))["total"]
    split_day = (
        _entries_between(organization_id, since, split_end)
        .filter(transaction__kind__in=USED_KINDS)
        .aggregate(total=Sum("quantity"))["total"]
    )
    return (whole_days or 0) + (split_day or 0)


def _project(organization_id: int, *, rate: float, now: dt.datetime) -> Forecast:
    """Spend `rate` credits a day from the pool's valid lots, earliest expiry first, losing
    what is left of each lot on its expiry day; days in the active time zone."""
    today = timezone.localdate(now)
    # The general pool only, like every "available" figure: earmarked credits are not what
    # plans spend. Its holds are spent first: they are promised already.
    pool = Holding.objects.filter(
        rules.lot_usable(now, "lot__"),
        account__organization_id=organization_id,
        account__kind=Account.Kind.POOL,
        live=True,
    )
    # Lots that expire on the same local day are spent and lost together, so one figure per
    # day projects the same as one per lot: a few hundred rows instead of every live lot.
    by_day = (
        pool.annotate(
            expires_on=TruncDate("lot__expires_at", tzinfo=timezone.get_current_timezone())
        )
        .values("expires_on")
        .annotate(quantity=Sum("quantity"))
        .values_list("quantity", "expires_on")
    )
    lots = [[quantity, expires_on] for quantity, expires_on in by_day]
    lots.sort(key=lambda lot: (lot[1] is None, lot[1] or dt.date.max))
    held = (
        Account.objects.filter(organization_id=organization_id, kind=Account.Kind.POOL)
        .values_list("held", flat=True)
        .first()
    ) or 0
    for lot in lots:
        part = min(held, lot[0])
        lot[0] -= part
        held -= part
    # The lots are in consumption order, which is also expiry order: what has expired by a
    # day, and what has been spent, are both a prefix of the list. Two cursors and a running
    # total keep each day's step short, however many lots an organization holds.
    total = sum(lot[0] for lot in lots)
    expired_unused, runs_out, points, carry = 0, None, [], 0.0
    unexpired = spending = 0
    for offset in range(HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        # What is left of a lot on its expiry day is lost.
        while (
            unexpired < len(lots) and lots[unexpired][1] is not None and lots[unexpired][1] <= day
        ):
            expired_unused += lots[unexpired][0]
            total -= lots[unexpired][0]
            lots[unexpired][0] = 0
            unexpired += 1
        carry += rate
        take, carry = int(carry), carry - int(carry)
        spending = max(spending, unexpired)
        while take and spending < len(lots):
            part = min(take, lots[spending][0])
            lots[spending][0] -= part
            total -= part
            take -= part
            if lots[spending][0] == 0:
                spending += 1
        if offset % 7 == 0:
            points.append((day, total))
        if total == 0:
            runs_out = day
            points.append((day, 0))
            break
    return Forecast(
        enough_history=True,
        daily_rate=round(rate, 1),
        runs_out_on=runs_out,
        expires_unused=expired_unused,
        points=tuple(points),
    )
