"""A lot's validity on the organization's calendar, stated once (docs/credit-model.md, *Lots*).

"Valid N days from its invoice date" means: usable through the end of the Nth local calendar
day after the invoice date, in the organization's time zone. A lot invoiced on Mar 1, 2026
with 365 days is usable through Mar 1, 2027 whatever the hour it was paid, and its
`expires_at` is the local midnight that ends that day (DST-correct: it is computed on dates,
then placed in the zone, never by adding hours). The last usable day is what people are shown;
an expiry that is not at a local midnight (set explicitly) is shown with its time.
"""

from __future__ import annotations

import datetime as dt

_TICK = dt.timedelta(microseconds=1)  # PostgreSQL's resolution


def day_start(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    """The first instant of a local day, in UTC. Where clocks skip midnight (a DST change at
    00:00), zoneinfo reads the missing 00:00 with the offset before the change, which is the
    instant the day actually begins. UTC, so that comparing two of these compares instants
    (Python compares datetimes of one tzinfo by their wall-clock times)."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone).astimezone(dt.UTC)


def end_of_local_day(instant: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The local midnight that ends the day `instant` falls on."""
    return day_start(instant.astimezone(zone).date() + dt.timedelta(days=1), zone)


def validity_end(invoiced_at: dt.datetime, days: int, zone: dt.tzinfo) -> dt.datetime:
    """`expires_at` of a lot valid `days` days from its invoice date: the end of local day
    invoice date + `days`."""
    last_day = invoiced_at.astimezone(zone).date() + dt.timedelta(days=days)
    return day_start(last_day + dt.timedelta(days=1), zone)


def last_usable_day(expires_at: dt.datetime, zone: dt.tzinfo) -> dt.date:
    """The last local day on which any of the lot can be used (the lot is gone from
    `expires_at` on, so an expiry at midnight leaves the day before)."""
    return (expires_at - _TICK).astimezone(zone).date()


def ends_with_a_day(expires_at: dt.datetime, zone: dt.tzinfo) -> bool:
    """Whether the lot expires exactly when a local day ends (the usual case)."""
    return expires_at == day_start(expires_at.astimezone(zone).date(), zone)


def _date(day: dt.date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


def usable_through(expires_at: dt.datetime, zone: dt.tzinfo) -> str:
    """'usable through Mar 1, 2027', or 'usable until Mar 1, 2027 23:30 NZDT' for an expiry
    in the middle of a day."""
    if ends_with_a_day(expires_at, zone):
        return f"usable through {_date(last_usable_day(expires_at, zone))}"
    local = expires_at.astimezone(zone)
    return f"usable until {_date(local.date())} {local:%H:%M} {local.tzname()}"


def expiry_phrase(expires_at: dt.datetime, zone: dt.tzinfo) -> str:
    """How an email says when a lot expires, with the date and zone of its last usable day:
    'at the end of Mar 1, 2027 (NZDT)', or 'on Mar 1, 2027 at 23:30 NZDT'."""
    if ends_with_a_day(expires_at, zone):
        last = (expires_at - _TICK).astimezone(zone)
        return f"at the end of {_date(last.date())} ({last.tzname()})"
    local = expires_at.astimezone(zone)
    return f"on {_date(local.date())} at {local:%H:%M} {local.tzname()}"
