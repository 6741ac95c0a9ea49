"""How pages show a lot's validity: its last usable day on the organization's calendar
(credits/validity.py), never a "valid until" date on which nothing is usable any more."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django import template
from django.utils import timezone

from credits import validity

register = template.Library()


def _organization_zone(context, zone_name: str | None) -> zoneinfo.ZoneInfo:
    if not zone_name:
        organization = context.get("current_organization") or context.get("organization")
        zone_name = getattr(organization, "time_zone", None)
    if zone_name:
        return zoneinfo.ZoneInfo(zone_name)
    return timezone.get_current_timezone()


@register.simple_tag(takes_context=True)
def last_usable_day(context, expires_at: dt.datetime | None, zone_name: str | None = None) -> str:
    """'Mar 1, 2027': the last local day of the organization on which the lot can be used,
    with the zone's name when the viewer's zone is another one; an expiry in the middle of a
    day adds its time ('Mar 1, 2027, until 23:30 NZDT'). Blank for a lot that never expires."""
    if expires_at is None:
        return ""
    zone = _organization_zone(context, zone_name)
    if not validity.ends_with_a_day(expires_at, zone):
        local = expires_at.astimezone(zone)
        return f"{local:%b} {local.day}, {local.year}, until {local:%H:%M} {local.tzname()}"
    day = validity.last_usable_day(expires_at, zone)
    text = f"{day:%b} {day.day}, {day.year}"
    if timezone.get_current_timezone_name() != str(zone):
        text += f" ({zone})"
    return text
