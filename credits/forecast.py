"""When will the credits run out? From the last 90 days' redemptions and the lots'
scheduled expiries: consumption takes the earliest-expiring lots first, like the ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Min, Q, Sum
from django.utils import timezone

from accounts.models import Organization

from .models import Account, Holding, LedgerEntry

WINDOW_DAYS = 90
MIN_HISTORY_DAYS = 14
HORIZON_DAYS = 730
CHART_WIDTH, CHART_HEIGHT = 600, 120


@dataclass(frozen=True)
class Forecast:
    enough_history: bool
    daily_rate: float = 0.0
    runs_out_on: dt.date | None = None
    expires_unused: int = 0
    points: tuple[tuple[dt.date, int], ...] = ()

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


def forecast(*, organization: Organization, now: dt.datetime | None = None) -> Forecast:
    now = now or timezone.now()
    entries = LedgerEntry.objects.filter(account__organization=organization)
    first = entries.aggregate(first=Min("created_at"))["first"]
    used = -(
        entries.filter(
            Q(transaction__kind__in=["redeem", "capture", "reverse"]),
            created_at__gte=now - dt.timedelta(days=WINDOW_DAYS),
        ).aggregate(total=Sum("quantity"))["total"]
        or 0
    )
    history_days = (now - first).days if first else 0
    if used <= 0 or history_days < MIN_HISTORY_DAYS:
        return Forecast(enough_history=False)
    rate = used / min(WINDOW_DAYS, history_days)
    today = timezone.localdate(now)
    # The general pool only, like every "available" figure: earmarked credits are not what
    # plans spend. Its holds are spent first: they are promised already.
    pool = Holding.objects.filter(
        account__organization=organization,
        account__kind=Account.Kind.POOL,
        live=True,
        lot__expired_at__isnull=True,
        lot__revoked_at__isnull=True,
    ).filter(Q(lot__expires_at__isnull=True) | Q(lot__expires_at__gt=now))
    lots = [
        [quantity, timezone.localdate(expires_at) if expires_at else None]
        for quantity, expires_at in pool.values_list("quantity", "lot__expires_at")
    ]
    lots.sort(key=lambda lot: (lot[1] is None, lot[1] or dt.date.max))
    held = (
        Account.objects.filter(organization=organization, kind=Account.Kind.POOL)
        .values_list("held", flat=True)
        .first()
    ) or 0
    for lot in lots:
        part = min(held, lot[0])
        lot[0] -= part
        held -= part
    expired_unused, runs_out, points, carry = 0, None, [], 0.0
    for offset in range(HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        for lot in lots:  # what is left of a lot on its expiry day is lost
            if lot[1] is not None and lot[1] <= day and lot[0] > 0:
                expired_unused += lot[0]
                lot[0] = 0
        carry += rate
        take, carry = int(carry), carry - int(carry)
        for lot in lots:
            if take == 0:
                break
            part = min(take, lot[0])
            lot[0] -= part
            take -= part
        total = sum(lot[0] for lot in lots)
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
