"""The stored forecast: computed by beat from the daily totals (credits.forecast), the same
figures as the entry-by-entry computation the dashboard used to run on every request."""

import dataclasses
import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from config.celery import app
from credits import forecast as forecasting
from credits import services, tasks
from credits.forecast import Forecast, forecast_refresh, organizations_to_refresh
from credits.models import StoredForecast
from tests.accounts.factories import OrganizationFactory
from tests.catalog.factories import CourseFactory
from tests.credits import references
from tests.credits.factories import grant, hold, key, redeem

pytestmark = pytest.mark.django_db

UTC = dt.UTC


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


def at(instant: dt.datetime):
    return time_machine.travel(instant, tick=False)


def stored(organization, now) -> Forecast:
    row = forecast_refresh(organization_id=organization.pk, now=now)
    return Forecast.from_stored(row)


def inline(organization, now) -> Forecast:
    """What the dashboard computed on each request, in the organization's zone."""
    with timezone.override(zoneinfo.ZoneInfo(organization.time_zone)):
        return references.forecast_by_every_entry(organization=organization, now=now)


def same(organization, now) -> Forecast:
    """Store the forecast at `now` and check it is the inline computation's, field by field
    (the chart's points included), but for the time it was computed."""
    result = stored(organization, now)
    assert result.computed_at == now
    assert dataclasses.replace(result, computed_at=None) == inline(organization, now)
    return result


# --- Hand-computed figures ------------------------------------------------------------------


def test_too_little_history_is_stored_plainly(organization, pool):
    grant(organization, 100)
    redeem(pool, 5)
    result = same(organization, timezone.now())
    assert result.enough_history is False and result.points == ()


# Noon in New York (the organization's zone), far from a daylight-saving change.
START = dt.datetime(2026, 7, 1, 16, tzinfo=UTC)
TODAY = dt.date(2026, 7, 1)


def test_runs_out_and_counts_what_expires_unused_first(organization, pool):
    with at(START - dt.timedelta(days=90)):
        grant(organization, 100)  # lot A: expires in 275 days from START
        grant(organization, 400, expires_at=START + dt.timedelta(days=20))  # lot B
    for day in range(90):  # one credit a day for 90 days, from the soonest lot (B)
        with at(START - dt.timedelta(days=90 - day)):
            redeem(pool, 1)
    with at(START):
        result = same(organization, START)
    assert result.enough_history and result.daily_rate == 1.0
    # B keeps 310; days 0-19 use 20 of it before it expires on day 20, so 290 expire
    # unused; A's 100 then cover days 20-119: the last credit goes on day 119.
    assert result.expires_unused == 290
    assert result.runs_out_on == TODAY + dt.timedelta(days=119)
    # Week by week: 409 after the first day's credit, 402 a week later, ...
    assert result.points[:2] == ((TODAY, 409), (TODAY + dt.timedelta(days=7), 402))
    assert result.points[-1] == (TODAY + dt.timedelta(days=119), 0)
    assert result.polyline


def test_the_pool_less_its_holds_not_earmarked_credits(organization, pool):
    with at(START - dt.timedelta(days=90)):
        grant(organization, 200)
        course = services.course_account(organization=organization, course=CourseFactory())
        services.credits_transfer(
            source=pool, destination=course, quantity=100, idempotency_key="e"
        )
    for day in range(90):
        with at(START - dt.timedelta(days=90 - day)):
            redeem(pool, 1)
    with at(START):
        hold(pool, 5)
        result = same(organization, START)
    # 10 left in the pool, 5 of them promised: at one a day the last goes on day 4.
    assert result.runs_out_on == TODAY + dt.timedelta(days=4)


# --- The daily totals' edges: the same figures as every entry -------------------------------


def test_the_window_starts_at_the_instant_not_at_its_utc_day(organization, pool):
    """Use just before and just after `now - 90 days`, on the same UTC day: only what is
    inside counts, as entry by entry. Captures and reversals count, transfers do not."""
    now = dt.datetime(2026, 6, 1, 15, 30, tzinfo=UTC)
    edge = now - dt.timedelta(days=90)  # 15:30 UTC
    with at(edge - dt.timedelta(days=30)):
        grant(organization, 1000)
    with at(edge - dt.timedelta(minutes=1)):
        redeem(pool, 40)  # outside the window, on the edge's UTC day
    with at(edge):
        first_inside = redeem(pool, 90)  # exactly on the edge: inside
    with at(edge + dt.timedelta(hours=2)):
        services.hold_capture(hold=hold(pool, 60))
    with at(edge + dt.timedelta(days=10)):
        course = services.course_account(organization=organization, course=CourseFactory())
        services.credits_transfer(source=pool, destination=course, quantity=50, idempotency_key="t")
        redeem(course, 30)  # use from an earmark counts too, as it always has
    with at(edge + dt.timedelta(days=20)):
        services.credits_reverse(
            original=first_inside, quantity=45, reason="level change", idempotency_key=key("r")
        )
    with at(now):
        result = same(organization, now)
    # (90 + 60 + 30 - 45) / 90 days; with the 40 it would be 1.9, without the edge's 0.5.
    assert result.daily_rate == 1.5


def test_history_is_counted_from_the_first_entry_not_its_utc_day(organization, pool):
    """The first entry at 18:00 UTC: 13 days and 23 hours later is still too little history
    (its UTC day began 14 days and 17 hours before), 14 days later is enough."""
    first = dt.datetime(2026, 3, 2, 18, tzinfo=UTC)
    with at(first):
        grant(organization, 300)
    for day in range(1, 14):
        with at(first + dt.timedelta(days=day)):
            redeem(pool, 2)
    assert same(organization, first + dt.timedelta(days=14, hours=-1)).enough_history is False
    result = same(organization, first + dt.timedelta(days=14))
    assert result.enough_history and result.daily_rate == round(26 / 14, 1)


def test_it_is_computed_in_the_organizations_days(pool, organization):
    """At 20:00 UTC it is already tomorrow in Tokyo: the projection starts on Tokyo's day,
    whatever zone the worker runs in."""
    organization.time_zone = "Asia/Tokyo"
    organization.save()
    now = dt.datetime(2026, 4, 30, 20, tzinfo=UTC)
    with at(now - dt.timedelta(days=60)):
        grant(organization, 200)
    for day in range(60, 0, -1):
        with at(now - dt.timedelta(days=day)):
            redeem(pool, 1)
    with at(now), timezone.override(zoneinfo.ZoneInfo("America/Los_Angeles")):
        result = same(organization, now)
    # 140 left at one a day (60 over 60 days of history), from Tokyo's May 1.
    assert result.points[0] == (dt.date(2026, 5, 1), 139)
    assert result.runs_out_on == dt.date(2026, 5, 1) + dt.timedelta(days=139)


def test_reads_a_handful_of_rows_however_long_the_history(
    organization, pool, django_assert_num_queries
):
    with at(START - dt.timedelta(days=120)):
        grant(organization, 500)
    for day in range(119, 0, -1):
        with at(START - dt.timedelta(days=day)):
            redeem(pool, 1)
    # The organization's zone; the first entry's day, then its instant; the window's whole
    # days, then its first day's entries; the pool's live lots and its holds; the upsert;
    # the row read back.
    with at(START), django_assert_num_queries(9):
        forecast_refresh(organization_id=organization.pk, now=START)


# --- The stored row -------------------------------------------------------------------------


def test_a_refresh_replaces_the_row_but_never_with_an_older_forecast(organization, pool):
    start = dt.datetime(2026, 5, 1, 12, tzinfo=UTC)
    with at(start - dt.timedelta(days=30)):
        grant(organization, 100)
    for day in range(30, 0, -1):
        with at(start - dt.timedelta(days=day)):
            redeem(pool, 1)
    first = forecast_refresh(organization_id=organization.pk, now=start)
    later = forecast_refresh(organization_id=organization.pk, now=start + dt.timedelta(hours=1))
    assert StoredForecast.objects.count() == 1
    assert later.computed_at == start + dt.timedelta(hours=1)
    assert first.runs_out_on == later.runs_out_on
    # A late retry of the earlier run: the newer forecast stays.
    kept = forecast_refresh(organization_id=organization.pk, now=start)
    assert kept.computed_at == start + dt.timedelta(hours=1)


def test_an_organization_that_is_gone_stores_nothing():
    assert forecast_refresh(organization_id=10**9) is None
    assert tasks.forecast_refresh(10**9) is False
    assert not StoredForecast.objects.exists()


def test_the_task_stores_the_forecast(organization, pool):
    grant(organization, 10)
    assert tasks.forecast_refresh.delay(organization.pk).get() is True  # eager in tests
    row = StoredForecast.objects.get(organization=organization)
    assert row.enough_history is False and row.computed_at is not None


# --- Beat -----------------------------------------------------------------------------------


def test_beat_refreshes_the_forecasts_every_hour():
    (entry,) = [
        e
        for e in settings.CELERY_BEAT_SCHEDULE.values()
        if e["task"] == "credits.tasks.forecasts_refresh"
    ]
    assert entry["schedule"].minute == {35} and len(entry["schedule"].hour) == 24
    assert "credits.tasks.forecasts_refresh" in app.tasks
    assert "credits.tasks.forecast_refresh" in app.tasks


def test_the_hourly_run_queues_exactly_the_organizations_whose_forecast_can_change(
    organization, monkeypatch
):
    now = dt.datetime(2026, 6, 1, 12, tzinfo=UTC)
    recent = organization
    captured = OrganizationFactory(slug="captured")
    edge = OrganizationFactory(slug="edge")
    idle = OrganizationFactory(slug="idle")
    lapsed = OrganizationFactory(slug="lapsed")
    stale = OrganizationFactory(slug="stale")
    OrganizationFactory(slug="empty")
    for org in (recent, captured, edge, idle, lapsed, stale):
        with at(now - dt.timedelta(days=200)):
            grant(org, 100, expires_at=now + dt.timedelta(days=300))
    with at(now - dt.timedelta(days=3)):
        redeem(services.pool_account(organization=recent), 2)
        services.hold_capture(hold=hold(services.pool_account(organization=captured), 1))
    with at(now - dt.timedelta(days=90, hours=-1)):  # inside the window, by an hour
        redeem(services.pool_account(organization=edge), 1)
    with at(now - dt.timedelta(days=120)):  # used, but long ago
        redeem(services.pool_account(organization=lapsed), 5)
        redeem(services.pool_account(organization=stale), 5)
    # `stale`'s stored forecast still says it has history: once more, to say it has not.
    StoredForecast.objects.create(organization=stale, computed_at=now, enough_history=True)
    StoredForecast.objects.create(organization=lapsed, computed_at=now, enough_history=False)
    # `idle` has credits and a hold (no use); `empty` has nothing.
    hold(services.pool_account(organization=idle), 3)

    expected = sorted(org.pk for org in (recent, captured, edge, stale))
    assert organizations_to_refresh(now=now) == expected

    queued = []
    monkeypatch.setattr(tasks.forecast_refresh, "delay", queued.append)
    with at(now):
        assert tasks.forecasts_refresh() == 4
    assert queued == expected


def test_the_hourly_run_stops_queuing_when_the_broker_is_gone(organization, pool, monkeypatch):
    second = OrganizationFactory(slug="second")
    for org in (organization, second):
        grant(org, 5)
        redeem(services.pool_account(organization=org), 1)
    calls = []

    def broker_gone(organization_id):
        calls.append(organization_id)
        raise ConnectionError("no broker")

    monkeypatch.setattr(tasks.forecast_refresh, "delay", broker_gone)
    assert tasks.forecasts_refresh() == 0
    assert len(calls) == 1  # the next hourly run queues them all again


# --- Asked for by the dashboard -------------------------------------------------------------


def test_a_missing_forecast_is_asked_for_once(organization, monkeypatch):
    queued = []
    monkeypatch.setattr(tasks.forecast_refresh, "delay", queued.append)
    assert forecasting.forecast_refresh_request(organization_id=organization.pk) is True
    assert forecasting.forecast_refresh_request(organization_id=organization.pk) is False
    assert queued == [organization.pk]


def test_a_request_the_broker_refused_is_asked_for_again(organization, monkeypatch):
    def broker_gone(organization_id):
        raise ConnectionError("no broker")

    monkeypatch.setattr(tasks.forecast_refresh, "delay", broker_gone)
    assert forecasting.forecast_refresh_request(organization_id=organization.pk) is False
    queued = []
    monkeypatch.setattr(tasks.forecast_refresh, "delay", queued.append)
    assert forecasting.forecast_refresh_request(organization_id=organization.pk) is True
    assert queued == [organization.pk]
