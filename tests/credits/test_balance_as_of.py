""" "Balance on a past date" is what was usable at the midnight that ends the day, in the
viewer's zone: a lot that had expired by then counts for nothing even if the hourly expiry
job had not run yet, and a movement at exactly that midnight belongs to the next day, as in
the history's date filter."""

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.urls import reverse

from credits import selectors, services
from tests.credits.factories import grant, redeem

pytestmark = pytest.mark.django_db

URL = reverse("credits:overview")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")  # the organization's zone (conftest)


def local(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


def shown_as_of(client, day: str) -> str:
    page = client.get(URL, {"as_of": day}).content.decode()
    return page.split('data-testid="as-of">')[1].split("<small>")[0]


def history(client, **dates) -> list[str]:
    page = client.get(URL, dates)
    return [txn.reference for txn in page.context["page"].rows]


def test_a_lot_that_expired_at_2330_is_not_in_that_days_closing_balance(
    admin_client, organization, pool
):
    with time_machine.travel(local(2026, 3, 1, 9), tick=False):
        grant(organization, 10, expires_at=local(2026, 3, 10, 23, 30))
        redeem(pool, 1)
    # 23:40, before the hourly job has recorded the expiry: the 9 credits are unusable.
    with time_machine.travel(local(2026, 3, 10, 23, 40), tick=False):
        assert "held <strong>0</strong> credits" in shown_as_of(admin_client, "2026-03-10")
        assert "held <strong>9</strong> credits" in shown_as_of(admin_client, "2026-03-09")


def test_balance_at_an_instant_drops_at_the_expiry_instant_whether_or_not_the_job_ran(
    organization, pool
):
    expiry = local(2026, 3, 10, 23, 30)
    with time_machine.travel(local(2026, 3, 1, 9), tick=False):
        grant(organization, 10, expires_at=expiry)
        grant(organization, 4)  # a year's validity: still there
        redeem(pool, 1)  # from the soonest lot
    tick = dt.timedelta(microseconds=1)

    def at(moment):
        return selectors.balance_as_of(organization=organization, at=moment)

    assert at(expiry - tick) == 13
    assert at(expiry) == 4  # not yet recorded by the job: still nothing left of it
    with time_machine.travel(expiry + dt.timedelta(minutes=35), tick=False):
        assert services.lots_expire() == 1  # the job's run, 35 minutes late
    assert (at(expiry - tick), at(expiry), at(expiry + dt.timedelta(hours=1))) == (13, 4, 4)


def test_a_lot_ending_with_the_day_is_gone_at_the_end_of_it(admin_client, organization):
    with time_machine.travel(local(2026, 3, 1, 9), tick=False):
        grant(organization, 10, expires_at=local(2026, 3, 11, 0, 0))  # usable through Mar 10
    with time_machine.travel(local(2026, 3, 20, 9), tick=False):
        services.lots_expire()
        assert "held <strong>10</strong> credits" in shown_as_of(admin_client, "2026-03-09")
        assert "held <strong>0</strong> credits" in shown_as_of(admin_client, "2026-03-10")


def test_a_movement_at_local_midnight_belongs_to_the_next_day_in_both_views(
    admin_client, organization
):
    with time_machine.travel(local(2026, 3, 10, 15), tick=False):
        grant(organization, 10, reference="afternoon")
    with time_machine.travel(local(2026, 3, 11, 0, 0), tick=False):
        grant(organization, 5, reference="midnight")
    with time_machine.travel(local(2026, 3, 12, 9), tick=False):
        assert "held <strong>10</strong> credits" in shown_as_of(admin_client, "2026-03-10")
        assert "held <strong>15</strong> credits" in shown_as_of(admin_client, "2026-03-11")
        assert history(admin_client, start="2026-03-10", end="2026-03-10") == ["afternoon"]
        assert history(admin_client, start="2026-03-11", end="2026-03-11") == ["midnight"]


def test_the_day_of_a_dst_change_ends_at_its_own_midnight(admin_client, organization):
    # Mar 8, 2026 has 23 hours in New York; 23:30 EDT is still that day, 00:00 EDT is not.
    with time_machine.travel(local(2026, 3, 8, 23, 30), tick=False):
        grant(organization, 3, reference="late")
    with time_machine.travel(local(2026, 3, 9, 0, 0), tick=False):
        grant(organization, 4, reference="next")
    with time_machine.travel(local(2026, 3, 12, 9), tick=False):
        assert "held <strong>3</strong> credits" in shown_as_of(admin_client, "2026-03-08")
        assert history(admin_client, start="2026-03-08", end="2026-03-08") == ["late"]


def test_the_page_names_the_zone_of_the_day(admin_client, organization):
    grant(organization, 1)
    assert "(America/New_York)" in shown_as_of(admin_client, "2026-03-10")


def test_balance_from_daily_totals_equals_the_sum_over_every_entry(organization, pool):
    """The read model (daily totals, that day's entries, lots not yet marked) against the
    definition itself, a sum over every entry, at instants around every movement of two weeks
    of purchases, redemptions, late and prompt expiry runs and a revocation."""
    from django.db.models import Q, Sum

    from credits.models import LedgerEntry

    start = dt.datetime(2026, 3, 1, 22, tzinfo=dt.UTC)
    moments = []
    for day in range(14):
        now = start + dt.timedelta(days=day, hours=day % 5)
        with time_machine.travel(now, tick=False):
            expiry = now + dt.timedelta(days=2, hours=day % 3)
            grant(organization, 5 + day, expires_at=expiry)
            if day == 4:
                revoked = grant(organization, 7, reference="refunded")
            if day == 6:
                services.lot_revoke(lot=revoked, reason="refund", idempotency_key="rev")
            redeem(pool, 2)
        if day % 3:  # the job late some days, on time on others
            ran = now + dt.timedelta(hours=day % 4 * 7)
            with time_machine.travel(ran, tick=False):
                services.lots_expire()
            moments.append(ran)
        moments += [now, now + dt.timedelta(hours=2), expiry, now.replace(hour=0, minute=0)]

    def by_definition(at):
        return (
            LedgerEntry.objects.filter(
                Q(lot__expires_at__isnull=True) | Q(lot__expires_at__gt=at),
                account=pool,
                created_at__lt=at,
            ).aggregate(total=Sum("quantity"))["total"]
            or 0
        )

    tick = dt.timedelta(microseconds=1)
    for moment in moments:
        for at in (moment - tick, moment, moment + tick):
            assert selectors.balance_as_of(organization=organization, at=at) == by_definition(at)
