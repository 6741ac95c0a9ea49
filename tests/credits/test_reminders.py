"""Expiry reminders on the customer's calendar: "N days before" is the local day N days
before a lot's last usable day, in the organization's zone, and the digest arrives in that
day's morning (the job runs hourly, as beat runs it; each organization's digest goes on the
first run past 07:00 local), once per organization and local day."""

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.core import mail

from accounts.models import Membership
from credits import alerts, services
from credits.models import Alert
from credits.tasks import expiry_reminders
from outbox.models import OutboxMessage
from tests.accounts.factories import OrganizationFactory, member
from tests.credits.factories import grant, redeem

pytestmark = pytest.mark.django_db

UTC = dt.UTC


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Runs a job as a worker does: the emails it wrote go out once its transaction commits."""

    def run(job, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return job(*args, **kwargs)

    return run


@pytest.fixture
def beat(run):
    """Runs the reminders at :25 past every hour, as the beat schedule does, from `start` to
    `end` (UTC); returns (local time, reminder day) of each digest the organization got."""

    def beat(organization, start: dt.datetime, end: dt.datetime) -> list[tuple[str, int]]:
        zone = zoneinfo.ZoneInfo(organization.time_zone)
        sent = []
        moment = start.replace(minute=25, second=0, microsecond=0)
        while moment <= end:
            with time_machine.travel(moment, tick=False):
                before = set(_digest_alerts(organization))
                if run(expiry_reminders):
                    days = sorted(set(_digest_alerts(organization)) - before)
                    sent.append((f"{moment.astimezone(zone):%Y-%m-%d %H:%M %Z}", days))
            moment += dt.timedelta(hours=1)
        return sent

    return beat


def _digest_alerts(organization) -> list[int]:
    keys = Alert.objects.filter(organization=organization, key__startswith="expiry:")
    return [int(key.rsplit(":", 1)[1]) for key in keys.values_list("key", flat=True)]


def admin_of(zone: str):
    organization = OrganizationFactory(time_zone=zone)
    member(organization, Membership.Role.ADMIN, email=f"admin@{zone.replace('/', '-')}.test")
    return organization


def usable_through(organization, day: dt.date, quantity: int = 5):
    """A lot whose last usable day is `day` (it expires at the local midnight ending it)."""
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    with time_machine.travel(midnight - dt.timedelta(days=60), tick=False):
        return grant(organization, quantity, expires_at=midnight)


def test_in_auckland_one_day_before_a_midnight_expiry_arrives_the_morning_before(beat):
    organization = admin_of("Pacific/Auckland")
    usable_through(organization, dt.date(2027, 3, 1))  # gone at 00:00 NZDT on Mar 2
    sent = beat(
        organization,
        dt.datetime(2027, 2, 21, 12, tzinfo=UTC),  # 01:00 NZDT on Feb 22
        dt.datetime(2027, 3, 2, 0, tzinfo=UTC),
    )
    assert sent == [
        ("2027-02-22 07:25 NZDT", [7]),
        ("2027-02-28 07:25 NZDT", [1]),
    ]
    last = mail.outbox[-1]
    assert last.subject == "5 credits expire at the end of Mar 1, 2027 (NZDT)"
    assert "at the end of Mar 1, 2027 (NZDT)" in last.body
    assert "the last day to use them is tomorrow" in last.body
    assert "at the end of Mar 1, 2027 (NZDT)" in last.alternatives[0][0]


@pytest.mark.parametrize(
    ("zone", "last_day", "expected"),
    [
        # New York springs forward on Mar 14, 2027 (a 23-hour day)...
        (
            "America/New_York",
            dt.date(2027, 3, 15),
            [("2027-03-08 07:25 EST", [7]), ("2027-03-14 07:25 EDT", [1])],
        ),
        # ... and falls back on Nov 7, 2027 (25 hours).
        (
            "America/New_York",
            dt.date(2027, 11, 8),
            [("2027-11-01 07:25 EDT", [7]), ("2027-11-07 07:25 EST", [1])],
        ),
        # Auckland leaves daylight time on Apr 4, 2027...
        (
            "Pacific/Auckland",
            dt.date(2027, 4, 5),
            [("2027-03-29 07:25 NZDT", [7]), ("2027-04-04 07:25 NZST", [1])],
        ),
        # ... and starts it again on Sep 26, 2027.
        (
            "Pacific/Auckland",
            dt.date(2027, 9, 27),
            [("2027-09-20 07:25 NZST", [7]), ("2027-09-26 07:25 NZDT", [1])],
        ),
    ],
)
def test_reminder_days_are_local_days_across_dst_in_both_hemispheres(
    beat, zone, last_day, expected
):
    organization = admin_of(zone)
    usable_through(organization, last_day)
    # From the first hour of the 7-day reminder's local day (the 30-day one went before).
    local = zoneinfo.ZoneInfo(zone)
    start = dt.datetime.combine(last_day - dt.timedelta(days=7), dt.time.min, tzinfo=local)
    end = dt.datetime.combine(last_day + dt.timedelta(days=2), dt.time.min, tzinfo=local)
    assert beat(organization, start.astimezone(UTC), end.astimezone(UTC)) == expected


def test_a_zone_west_of_utc_gets_its_digest_in_its_own_morning(beat):
    organization = admin_of("Pacific/Honolulu")
    usable_through(organization, dt.date(2027, 6, 30))
    sent = beat(
        organization,
        dt.datetime(2027, 6, 23, 10, tzinfo=UTC),  # 00:00 HST on Jun 23
        dt.datetime(2027, 7, 1, 12, tzinfo=UTC),
    )
    # 07:00 UTC would be 21:00 the evening before in Honolulu.
    assert sent == [("2027-06-23 07:25 HST", [7]), ("2027-06-29 07:25 HST", [1])]


def test_30_7_and_1_days_before_each_once(beat, organization, admin):
    usable_through(organization, dt.date(2027, 5, 31))
    sent = beat(
        organization,
        dt.datetime(2027, 4, 25, 0, tzinfo=UTC),
        dt.datetime(2027, 6, 2, 0, tzinfo=UTC),
    )
    assert sent == [
        ("2027-05-01 07:25 EDT", [30]),
        ("2027-05-24 07:25 EDT", [7]),
        ("2027-05-30 07:25 EDT", [1]),
    ]
    assert [m.to for m in mail.outbox] == [[admin.email]] * 3
    assert OutboxMessage.objects.filter(kind=alerts.EXPIRY_DIGEST).count() == 3


def test_the_last_day_is_still_reminded_when_the_day_before_was_missed(run, organization, admin):
    usable_through(organization, dt.date(2027, 5, 31))
    with time_machine.travel(dt.datetime(2027, 5, 31, 11, 20, tzinfo=UTC), tick=False):
        assert run(expiry_reminders) == 1  # 07:20 EDT on the last usable day
    assert "today is the last day to use them" in mail.outbox[0].body


def test_200_lots_expiring_make_one_digest_per_organization(
    organization, admin, other_organization, outsider, run
):
    soon = dt.datetime(2027, 5, 10, 12, tzinfo=UTC)
    with time_machine.travel(soon - dt.timedelta(days=60), tick=False):
        for n in range(200):
            grant(organization, 1 + n % 3, expires_at=soon + dt.timedelta(minutes=n))
        grant(other_organization, 7, expires_at=soon)
    # 12:00 UTC: the morning in New York and the afternoon in London.
    with time_machine.travel(soon - dt.timedelta(days=5), tick=False):
        assert run(expiry_reminders) == 2
        assert run(expiry_reminders) == 0  # the same day again: nothing more
    assert sorted(m.to[0] for m in mail.outbox) == [admin.email, outsider.email]
    (digest,) = [m for m in mail.outbox if m.to == [admin.email]]
    assert digest.subject == (
        "399 credits in 200 lots expire soon, the first on May 10, 2027 at 08:00 EDT"
    )
    assert "399 credits in 200 lots" in digest.body
    assert digest.body.count("credits expire on May 10, 2027") == alerts.DIGEST_LISTED
    assert "and 100 more lots" in digest.body
    (other,) = [m for m in mail.outbox if m.to == [outsider.email]]
    assert other.subject == "7 credits expire on May 10, 2027 at 13:00 BST"


def test_a_lot_due_after_todays_digest_waits_for_tomorrows(run, organization, admin):
    morning = dt.datetime(2027, 5, 10, 11, 20, tzinfo=UTC)  # 07:20 EDT
    usable_through(organization, dt.date(2027, 5, 30))
    with time_machine.travel(morning, tick=False):
        assert run(expiry_reminders) == 1
        late = grant(organization, 3, expires_at=morning + dt.timedelta(days=6))
    with time_machine.travel(morning + dt.timedelta(hours=1), tick=False):
        assert run(expiry_reminders) == 0  # one digest a local day
    with time_machine.travel(morning + dt.timedelta(days=1), tick=False):
        assert run(expiry_reminders) == 1
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject.startswith("3 credits expire on May 16, 2027")
    assert Alert.objects.filter(key=f"expiry:{late.pk}:7").exists()


def test_nothing_is_sent_before_the_local_morning(run, organization, admin):
    usable_through(organization, dt.date(2027, 5, 31))
    with time_machine.travel(dt.datetime(2027, 5, 30, 10, 20, tzinfo=UTC), tick=False):
        assert run(expiry_reminders) == 0  # 06:20 EDT
    with time_machine.travel(dt.datetime(2027, 5, 30, 11, 20, tzinfo=UTC), tick=False):
        assert run(expiry_reminders) == 1  # 07:20 EDT


def test_lots_spent_or_expired_get_no_reminder(run, organization, admin):
    lot = usable_through(organization, dt.date(2027, 5, 31))
    with time_machine.travel(lot.expires_at - dt.timedelta(days=10), tick=False):
        redeem(services.pool_account(organization=organization), 5)
    with time_machine.travel(lot.expires_at - dt.timedelta(days=3, hours=12), tick=False):
        assert run(expiry_reminders) == 0
