"""Alerts about an organization's credits: low balance, assigned credits about to exceed
the balance (seed 002), a daily digest of the lots about to expire, and the nightly audit.
Each goes out once per occurrence: the Alert row is claimed and the email written to the
outbox (outbox/services.py) in one transaction, so a job run twice (or twice at once) writes
it once, and an alert claimed while the mail server is down is sent when it is back."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organization
from outbox.services import NewMessage, messages_enqueue

from . import selectors, validity
from .audit import ledger_audit
from .models import Alert, Holding, Lot

log = logging.getLogger(__name__)

LOW_BALANCE = "low_balance"
OVER_ASSIGNED = "over_assigned"
EXPIRY_DIGEST = "expiry_digest"
LEDGER_AUDIT = "ledger_audit"
# A digest lists this many lots at most (soonest first) and counts the rest: 10,000 lots
# due on one day make one readable email, not one per lot.
DIGEST_LISTED = 100


def _admins(organization: Organization) -> list[str]:
    return list(
        Membership.objects.filter(
            organization=organization, role=Membership.Role.ADMIN
        ).values_list("user__email", flat=True)
    )


def _enqueue(
    organization: Organization, *, key: str, kind: str, subject: str, context: dict
) -> int:
    """An HTML and text email to each of the organization's admins, written to the outbox
    in the caller's transaction, times in the organization's zone. Returns the number of
    admins (none: nothing is written)."""
    recipients = _admins(organization)
    if not recipients:
        return 0
    with timezone.override(zoneinfo.ZoneInfo(organization.time_zone)):
        context = {"organization": organization, "site": settings.SITE_URL, **context}
        text = render_to_string(f"emails/{kind}.txt", context).strip() + "\n"
        html = render_to_string(f"emails/{kind}.html", context)
    messages_enqueue(
        messages=[
            NewMessage(
                key=key,
                to=recipients,
                subject=subject,
                text=text,
                html=html,
                kind=kind,
                organization=organization,
            )
        ]
    )
    return len(recipients)


def _claim(organization: Organization, key: str, now: dt.datetime) -> Alert | None:
    """The alert, if it was not active yet (and is now): the caller writes its email in the
    same transaction. None if another run claimed it first or it is still active."""
    alert = Alert.objects.select_for_update().filter(organization=organization, key=key).first()
    if alert is not None:
        if alert.active:
            return None
        alert.active, alert.sent_at = True, now
        alert.save(update_fields=["active", "sent_at"])
        return alert
    try:
        with transaction.atomic():
            return Alert.objects.create(organization=organization, key=key, sent_at=now)
    except IntegrityError:  # a concurrent run claimed it first
        return None


def _resolve(organization: Organization, key: str) -> None:
    Alert.objects.filter(organization=organization, key=key, active=True).update(active=False)


def active_alerts(*, organization: Organization) -> set[str]:
    return set(
        Alert.objects.filter(organization=organization, active=True).values_list("key", flat=True)
    )


def balance_check(*, organization_id: int, now: dt.datetime | None = None) -> list[str]:
    """Low balance and over-assigned: one email when crossing, none while it lasts, and
    ready to alert again once it has recovered. Returns the alerts written."""
    now = now or timezone.now()
    organization = Organization.objects.get(pk=organization_id)
    balance = selectors.organization_balance(organization=organization, now=now)
    crossings = [
        (
            LOW_BALANCE,
            balance.available < organization.low_balance_threshold,
            f"{organization.name}: {balance.spendable:,} credit"
            f"{'' if balance.spendable == 1 else 's'} left",
        ),
        (
            OVER_ASSIGNED,
            balance.nearly_over_assigned,
            f"{organization.name}: assigned credits are about to exceed your balance",
        ),
    ]
    context = {"balance": balance, "link": settings.SITE_URL + reverse("billing:add_credits")}
    sent = []
    for key, crossed, subject in crossings:
        if not crossed:
            _resolve(organization, key)  # recovered: the next crossing alerts again
            continue
        with transaction.atomic():
            alert = _claim(organization, key, now)
            if alert is None:
                continue
            # The claim is the occurrence: its time names the email, so the next crossing
            # (a new claim) is a new email and this one is written once.
            _enqueue(
                organization,
                key=f"credits.alert:{alert.pk}:{alert.sent_at.isoformat()}",
                kind=key,
                subject=subject,
                context=context,
            )
        sent.append(key)
    return sent


# The local hour from which an organization's expiry digest may go: it arrives at the start
# of the customer's day wherever they are. The job runs hourly and sends each organization's
# digest on the first run past this hour of its local day.
REMINDER_LOCAL_HOUR = 7


@dataclass(frozen=True)
class _DueLot:
    lot: Lot
    days: int  # the reminder day reached: 30, 7 or 1
    days_left: int  # local days from today to the lot's last usable day (0: today is)
    expires: str  # when it expires, with the date and zone of its last usable day

    @property
    def left(self) -> str:
        if self.days_left == 0:
            return "today is the last day to use them"
        if self.days_left == 1:
            return "the last day to use them is tomorrow"
        return f"the last day to use them is in {self.days_left} days"


def _reminder_day(days_left: int, reminder_days: list[int]) -> int | None:
    """The smallest reminder day (30, 7, 1 before the last usable day) reached: a lot first
    seen 5 days before is due for the 7-day reminder, not the 30-day one."""
    return next((d for d in reminder_days if days_left <= d), None)


def _organizations_due(
    now: dt.datetime, horizon: dt.datetime
) -> tuple[dict[int, Organization], dict[int, dt.date]]:
    """The organizations with lots expiring before `horizon` whose local day is past
    REMINDER_LOCAL_HOUR and whose digest of that day has not been written, and that day."""
    candidates = Organization.objects.filter(
        pk__in=Lot.objects.filter(
            expired_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=now,
            expires_at__lte=horizon,
        ).values("organization_id")
    )
    organizations, today = {}, {}
    for organization in candidates:
        local = now.astimezone(zoneinfo.ZoneInfo(organization.time_zone))
        if local.hour >= REMINDER_LOCAL_HOUR:
            organizations[organization.pk], today[organization.pk] = organization, local.date()
    sent = set(
        Alert.objects.filter(
            organization_id__in=list(today),
            key__in={f"expiry-digest:{day}" for day in today.values()},
        ).values_list("organization_id", "key")
    )
    today = {pk: day for pk, day in today.items() if (pk, f"expiry-digest:{day}") not in sent}
    return {pk: organizations[pk] for pk in today}, today


def _due_lots(
    now: dt.datetime,
    horizon: dt.datetime,
    organizations: dict[int, Organization],
    today: dict[int, dt.date],
) -> dict[int, list[_DueLot]]:
    """Per organization, its lots with credits left that have reached a reminder day on its
    calendar, soonest first. "N days before" is the local day N days before the lot's last
    usable day: a lot usable through Mar 1 is due for "1 day before" on Feb 28, local."""
    reminder_days = sorted(settings.EXPIRY_REMINDER_DAYS)
    lots = (
        Lot.objects.filter(
            organization_id__in=list(organizations),
            expired_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=now,
            expires_at__lte=horizon,
        )
        .annotate(remaining=Sum("holdings__quantity"))
        .filter(remaining__gt=0)
        .order_by("organization_id", "expires_at", "pk")
    )
    due: dict[int, list[_DueLot]] = {}
    for lot in lots:
        zone = zoneinfo.ZoneInfo(organizations[lot.organization_id].time_zone)
        last_day = validity.last_usable_day(lot.expires_at, zone)
        days_left = (last_day - today[lot.organization_id]).days
        days = _reminder_day(days_left, reminder_days)
        if days is not None:
            expires = validity.expiry_phrase(lot.expires_at, zone)
            due.setdefault(lot.organization_id, []).append(_DueLot(lot, days, days_left, expires))
    return due


def _claim_new(organization: Organization, keys: list[str], now: dt.datetime) -> set[str]:
    """Records these dated alerts at once; returns those not recorded before."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Alert._meta.db_table} (organization_id, key, active, sent_at)
            SELECT %s, k, true, %s FROM unnest(%s::text[]) AS k
            ON CONFLICT (organization_id, key) DO NOTHING
            RETURNING key
            """,  # noqa: S608 - the model's own table name; every value is a parameter
            [organization.pk, now, keys],
        )
        return {row[0] for row in cursor.fetchall()}


def expiry_reminders_send(*, now: dt.datetime | None = None) -> int:
    """Run hourly. To each organization's admins, once per local day and from
    REMINDER_LOCAL_HOUR local time on: one digest of every lot with credits left that has
    reached a reminder day (30, 7 or 1 local days before its last usable day) since the last
    digest. Each lot is listed once per reminder day (Alert `expiry:<lot>:<days>`), and an
    organization gets one digest per local day at most (Alert `expiry-digest:<date>`, and the
    outbox key `credits.expiry-digest:<org>:<date>`). Returns the number of digests written."""
    now = now or timezone.now()
    # Local days last at most 25 hours: two days beyond the largest reminder day reach every
    # lot whose last usable day is within it, in any zone.
    horizon = now + dt.timedelta(days=max(settings.EXPIRY_REMINDER_DAYS) + 2)
    organizations, today = _organizations_due(now, horizon)
    written = 0
    for organization_id, rows in _due_lots(now, horizon, organizations, today).items():
        organization = organizations[organization_id]
        day = today[organization_id]
        with transaction.atomic():
            new = _claim_new(organization, [f"expiry:{r.lot.pk}:{r.days}" for r in rows], now)
            rows = [r for r in rows if f"expiry:{r.lot.pk}:{r.days}" in new]
            if not rows:
                continue  # every lot was in an earlier digest
            if _claim(organization, f"expiry-digest:{day}", now) is None:
                # Today's digest already went (a run at the same time): these lots wait for
                # tomorrow's rather than being recorded as sent without an email.
                transaction.set_rollback(True)
                continue
            total = sum(r.lot.remaining for r in rows)
            # The subject and the body say the same local date and zone (the lots' own).
            subject = (
                f"{total} credits expire {rows[0].expires}"
                if len(rows) == 1
                else f"{total} credits in {len(rows)} lots expire soon, the first {rows[0].expires}"
            )
            admins = _enqueue(
                organization,
                key=f"credits.expiry-digest:{organization.pk}:{day}",
                kind=EXPIRY_DIGEST,
                subject=subject,
                context={
                    "lots": rows[:DIGEST_LISTED],
                    "more": max(len(rows) - DIGEST_LISTED, 0),
                    "total": total,
                    "link": settings.SITE_URL + reverse("training:plans"),
                    "credits_link": settings.SITE_URL + reverse("credits:overview"),
                },
            )
            if admins:
                written += 1
    return written


def nightly_audit(*, now: dt.datetime | None = None) -> bool:
    """The ledger audit; violations are logged at error level and emailed to staff, once a
    day (a second run on the same day writes no second email)."""
    report = ledger_audit()
    if report.ok:
        log.info("ledger ok: %s accounts, %s entries", report.accounts, report.entries)
        return True
    for violation in report.violations:
        log.error("ledger audit violation: %s", violation)
    staff = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .values_list("email", flat=True)
    )
    if staff:
        day = (now or timezone.now()).date()
        text = render_to_string(f"emails/{LEDGER_AUDIT}.txt", {"violations": report.violations})
        with transaction.atomic():
            messages_enqueue(
                messages=[
                    NewMessage(
                        key=f"credits.ledger-audit:{day}",
                        to=staff,
                        subject=f"Credit ledger audit: {len(report.violations)} violation(s)",
                        text=text.strip() + "\n",
                        kind=LEDGER_AUDIT,
                    )
                ]
            )
    return False


def organizations_with_credits() -> list[int]:
    return list(Holding.objects.values_list("account__organization_id", flat=True).distinct())
