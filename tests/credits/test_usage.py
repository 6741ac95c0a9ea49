"""credits.usage.monthly_flows: the Billing chart's months from the daily totals (UTC days)
plus the ledger's entries of the UTC days a local month boundary splits. It must say what
the entry-by-entry grouping (`tests.credits.references`) says, in any zone."""

import dataclasses
import datetime as dt
import itertools
import random
import zoneinfo

import pytest
import time_machine
from django.utils import timezone

from credits import services, usage
from credits.models import DailyTotal
from tests.accounts.factories import UserFactory
from tests.catalog.factories import CourseFactory
from tests.credits import references
from tests.credits.factories import grant, hold, key, redeem

pytestmark = pytest.mark.django_db

UTC = dt.UTC
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")  # UTC+9: its months begin at 15:00 UTC the day before
LOS_ANGELES = zoneinfo.ZoneInfo("America/Los_Angeles")  # UTC-8/-7, across DST changes
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")  # UTC+5:30
CHATHAM = zoneinfo.ZoneInfo("Pacific/Chatham")  # UTC+13:45 / +12:45
ZONES = [TOKYO, LOS_ANGELES, dt.UTC, KOLKATA, CHATHAM]
# The months the activity spans (local first days), October 2025 to April 2026.
FIRSTS = [dt.date(2025, 10, 1), *(dt.date(2025 + m // 12, m % 12 + 1, 1) for m in range(10, 16))]


def _midnight(day: dt.date, zone) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone)


def _instants() -> list[dt.datetime]:
    """Instants on and around the local month boundaries of Tokyo and Los Angeles (exactly
    at midnight, a second, minutes and hours either side), at UTC midnights, mid-month, and
    random ones within a day of a boundary (a fixed seed)."""
    chosen = set()
    for first in FIRSTS[1:-1]:
        for zone in (TOKYO, LOS_ANGELES):
            boundary = _midnight(first, zone)
            for seconds in (-3 * 3600, -60, -1, 0, 1, 60, 3 * 3600):
                chosen.add(boundary + dt.timedelta(seconds=seconds))
        chosen.add(_midnight(first, UTC))
        chosen.add(_midnight(first, UTC) - dt.timedelta(microseconds=1))
        chosen.add(_midnight(first.replace(day=15), UTC) + dt.timedelta(hours=10))
    rng = random.Random(20260401)
    for first in FIRSTS[1:-1]:
        for _ in range(3):
            chosen.add(_midnight(first, UTC) + dt.timedelta(seconds=rng.randint(-86400, 86400)))
    return sorted(chosen)


@pytest.fixture
def activity(organization):
    """Every kind the chart counts, and one it does not (transfers), at those instants:
    grants, redemptions, captures, reversals, support adjustments both ways, expiries,
    revocations and a restoration."""
    pool = services.pool_account(organization=organization)
    staff = UserFactory(is_staff=True)
    course = services.course_account(organization=organization, course=CourseFactory())
    instants = _instants()
    kinds = itertools.cycle(
        [
            "grant",
            "redeem",
            "capture",
            "reverse",
            "adjust+",
            "adjust-",
            "expire",
            "revoke",
            "transfer",
            "restore",
            "redeem-course",
        ]
    )
    redemptions, revocations = [], []
    with time_machine.travel(instants[0] - dt.timedelta(days=2), tick=False):
        grant(organization, 5000, expires_at=instants[-1] + dt.timedelta(days=400))
    for number, (instant, kind) in enumerate(zip(instants, kinds, strict=False)):
        quantity = number % 7 + 1
        with time_machine.travel(instant, tick=False):
            if kind == "grant":
                grant(organization, quantity * 10)
            elif kind == "redeem":
                redemptions.append(redeem(pool, quantity))
            elif kind == "capture":
                services.hold_capture(hold=hold(pool, quantity))
            elif kind == "reverse" and redemptions:
                services.credits_reverse(
                    original=redemptions.pop(0),
                    quantity=1,
                    reason="level change",
                    idempotency_key=key("reverse"),
                )
            elif kind in ("adjust+", "adjust-"):
                services.credits_adjust(
                    account=pool,
                    quantity=quantity if kind == "adjust+" else -quantity,
                    reason="support",
                    actor=staff,
                    idempotency_key=key("adjust"),
                )
            elif kind == "expire":
                # A lot due exactly now, expired by the job in the same instant.
                with time_machine.travel(instant - dt.timedelta(days=1), tick=False):
                    grant(organization, quantity, expires_at=instant)
                services.lots_expire(now=instant)
            elif kind == "revoke":
                lot = grant(organization, quantity + 2)
                revocations.append(
                    services.lot_revoke(
                        lot=lot, reason="refund", idempotency_key=key("revoke"), quantity=2
                    )
                )
            elif kind == "restore" and revocations:
                services.lot_restore(revocation=revocations.pop(0), reason="dispute won")
            elif kind == "transfer":
                services.credits_transfer(
                    source=pool, destination=course, quantity=quantity, idempotency_key=key("t")
                )
            elif kind == "redeem-course":
                redeem(course, 1)
    return instants


def _flows(flows) -> list[tuple]:
    return [dataclasses.astuple(flow) for flow in flows]


def _old(organization, zone, **kwargs) -> list[tuple]:
    with timezone.override(zone):
        return _flows(references.monthly_flows_by_every_entry(organization=organization, **kwargs))


NOWS = [
    dt.datetime(2026, 3, 20, 12, tzinfo=UTC),
    _midnight(dt.date(2026, 3, 1), TOKYO),  # exactly at a boundary
    _midnight(dt.date(2026, 3, 1), LOS_ANGELES) - dt.timedelta(seconds=1),
    dt.datetime(2026, 2, 1, tzinfo=UTC),
    dt.datetime(2026, 5, 2, 3, tzinfo=UTC),  # after all of it
]


def test_the_daily_totals_give_what_the_entries_give_in_every_zone(organization, activity):
    compared = 0
    for zone, now, months in itertools.product(ZONES, NOWS, (12, 3, 1)):
        expected = _old(organization, zone, now=now, months=months)
        got = usage.monthly_flows(organization=organization, now=now, months=months, zone=zone)
        assert _flows(got) == expected, (zone, now, months)
        compared += any(flow[1] or flow[2] or flow[3] for flow in expected)
    # The activity shows in most of those windows: not a comparison of empty months.
    assert compared >= 50
    # Without a zone, the active one.
    with timezone.override(TOKYO):
        got = usage.monthly_flows(organization=organization, now=NOWS[0])
    assert _flows(got) == _old(organization, TOKYO, now=NOWS[0])


def test_the_boundary_activity_really_moves_between_months(organization, activity):
    """The instants around the boundaries fall in other months in Tokyo than in Los Angeles
    (so counting a split day whole would have made one of them disagree above), and every
    month from November to March has each of the three series."""
    now = NOWS[0]
    assert _old(organization, TOKYO, now=now) != _old(organization, LOS_ANGELES, now=now)
    for zone in (TOKYO, LOS_ANGELES):
        flows = usage.monthly_flows(organization=organization, now=now, zone=zone)
        assert [flow.month for flow in flows[-5:]] == FIRSTS[1:-1]
        assert all(flow.bought and flow.used and flow.expired for flow in flows[-5:]), flows


def test_a_month_boundary_splits_a_utc_day_exactly(organization):
    """Hand-computed: in Tokyo, February begins at 15:00 UTC on January 31."""
    pool = services.pool_account(organization=organization)
    february = _midnight(dt.date(2026, 2, 1), TOKYO)
    with time_machine.travel(february - dt.timedelta(days=3), tick=False):
        grant(organization, 100)
    with time_machine.travel(february - dt.timedelta(seconds=1), tick=False):
        redeem(pool, 3)  # 23:59:59 on January 31 in Tokyo
    with time_machine.travel(february, tick=False):
        redeem(pool, 5)  # midnight: February's
    with time_machine.travel(february + dt.timedelta(hours=8, minutes=59), tick=False):
        redeem(pool, 7)  # 23:59 UTC, the same UTC day
    now = dt.datetime(2026, 2, 10, tzinfo=UTC)
    tokyo = usage.monthly_flows(organization=organization, now=now, months=2, zone=TOKYO)
    assert tokyo == [
        usage.MonthFlow(dt.date(2026, 1, 1), bought=100, used=3, expired=0),
        usage.MonthFlow(dt.date(2026, 2, 1), bought=0, used=12, expired=0),
    ]
    # In UTC all of it is January's; the daily totals hold it as one day.
    in_utc = usage.monthly_flows(organization=organization, now=now, months=2, zone=UTC)
    assert [(f.bought, f.used) for f in in_utc] == [(100, 15), (0, 0)]
    assert DailyTotal.objects.filter(organization=organization, day="2026-01-31").exists()


def test_two_queries_however_many_days(organization, activity, django_assert_num_queries):
    with django_assert_num_queries(2):  # the whole days, then the split days' entries
        usage.monthly_flows(organization=organization, now=NOWS[0], zone=TOKYO)
    with django_assert_num_queries(1):  # in UTC no day is split
        usage.monthly_flows(organization=organization, now=NOWS[0], zone=UTC)


def test_no_months_is_an_empty_chart(organization):
    assert usage.monthly_flows(organization=organization, months=0) == []


def test_ended_months_are_read_once_and_the_current_month_every_time(organization):
    pool = services.pool_account(organization=organization)
    with time_machine.travel(dt.datetime(2026, 2, 10, 12, tzinfo=UTC), tick=False):
        grant(organization, 100)
        redeem(pool, 7)
    now = dt.datetime(2026, 3, 20, 12, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        redeem(pool, 2)
        first = usage.monthly_flows(organization=organization, months=2, zone=UTC)
        # February has ended: it is not read again. A row changed behind the ledger's back
        # proves it (the audit is what finds such a change).
        DailyTotal.objects.filter(organization=organization, day="2026-02-10").update(lost=0)
        redeem(pool, 3)  # March has not: its new redemption shows at once
        second = usage.monthly_flows(organization=organization, months=2, zone=UTC)
    assert [(f.month.month, f.bought, f.used) for f in first] == [(2, 100, 7), (3, 0, 2)]
    assert [(f.month.month, f.bought, f.used) for f in second] == [(2, 100, 7), (3, 0, 5)]
    # Another zone's months are other months: not taken from this zone's cache.
    tokyo = usage.monthly_flows(organization=organization, months=2, zone=TOKYO, now=now)
    assert [(f.month.month, f.used) for f in tokyo] == [(2, 0), (3, 5)]
