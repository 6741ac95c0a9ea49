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
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organization
from outbox.services import NewMessage, messages_enqueue

from . import selectors, validity
from .audit import ledger_audit
from .models import Account, Alert, AuditRun, Holding, Lot

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


def _lots_due(now: dt.datetime, horizon: dt.datetime) -> QuerySet[Lot]:
    """Lots still valid that expire within the horizon: a range of the index lot_expiry_due
    (expires_at, where expired_at is null), whatever the number of lots sold before."""
    return Lot.objects.filter(
        expired_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=now,
        expires_at__lte=horizon,
    )


def _organizations_due(
    now: dt.datetime, horizon: dt.datetime
) -> tuple[dict[int, Organization], dict[int, dt.date]]:
    """The organizations with lots expiring before `horizon` whose local day is past
    REMINDER_LOCAL_HOUR and whose digest of that day has not been written, and that day."""
    # Two statements, not `pk__in=<subquery>`: as a semi-join the planner walks each
    # organization's lots by organization_id (every lot it ever bought) to find its due ones;
    # alone, the due lots are one range of lot_expiry_due, the horizon's lots and no others.
    due = _lots_due(now, horizon).order_by().values_list("organization_id", flat=True).distinct()
    candidates = Organization.objects.filter(pk__in=list(due))
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
    # What is left of each due lot, from its own live holdings (holdings.lot_id, a row or
    # three per lot), per lot: joined instead, the planner hashes every live holding of
    # every lot ever sold to match the few due.
    remaining = (
        Holding.objects.filter(lot=OuterRef("pk"), live=True)
        .order_by()
        .values("lot")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    lots = (
        _lots_due(now, horizon)
        .filter(organization_id__in=list(organizations))
        .annotate(remaining=Coalesce(Subquery(remaining), 0))
        .order_by("organization_id", "expires_at", "pk")
    )
    due: dict[int, list[_DueLot]] = {}
    for lot in lots:
        if lot.remaining <= 0:
            continue  # spent: nothing to remind of (filtered here, so the sum runs once)
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


# How often the nightly job proves all history rather than what changed since its checkpoint
# (credits.audit). The rule: a full run when no full run that passed has started in the last
# FULL_AUDIT_EVERY_DAYS UTC days, a recent one otherwise. Counting from the last full run
# rather than naming a weekday keeps a week between full runs after a missed night, a deploy
# or an on-demand `make audit` (which runs one), and makes the first run after a deploy a full
# one. A full run that found problems does not count: the next night runs full again, so
# staff hear every day about a fault in old history, as they do about any other.
FULL_AUDIT_EVERY_DAYS = 7


def _full_audit_due(now: dt.datetime) -> bool:
    # A full run that found problems is repeated the next night, until one passes. One that
    # never finished (killed at the task's time limit, a worker lost) is not: repeating it
    # would be killed again every night and leave no run, recent or full, that finishes.
    # The recent runs go on; the next full one is tried a week later.
    last = (
        AuditRun.objects.filter(scope=AuditRun.Scope.FULL)
        .filter(Q(finished_at__isnull=True) | Q(problems=0))
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    if last is None:
        return True
    days = now.astimezone(dt.UTC).date() - last.astimezone(dt.UTC).date()
    return days.days >= FULL_AUDIT_EVERY_DAYS


def nightly_audit(*, now: dt.datetime | None = None) -> bool:
    """The ledger audit, recent or full (FULL_AUDIT_EVERY_DAYS); violations are logged at
    error level and emailed to staff, once a day (a second run on the same day writes no
    second email)."""
    now = now or timezone.now()
    scope = AuditRun.Scope.FULL if _full_audit_due(now) else AuditRun.Scope.RECENT
    report = ledger_audit(scope=scope)
    if report.ok:
        log.info("ledger ok: %s", report.summary)
        return True
    for violation in report.violations:
        log.error("ledger audit violation (%s): %s", report.scope, violation)
    staff = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .values_list("email", flat=True)
    )
    if staff:
        day = now.date()
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
    """The organizations the hourly balance check must look at: those whose check could
    claim or resolve an alert. Read per organization through indexes (one of its holdings,
    its accounts' cached figures, its alert rows by their unique key) instead of DISTINCT
    over every holding ever written.

    Only organizations that have had credits (a holding, as before): one that never bought
    any gets no "0 credits left" email. Of those, an organization is left out only when its
    check would do nothing: every account holds nothing and reserves nothing, so available
    is 0 and nothing is over-assigned; its threshold is 0, so 0 available is not low; and no
    balance alert is active, so there is nothing to resolve. An organization that has just
    run out stays in (its threshold is above 0, or there was nothing to cross), so its "ran
    out" email goes on the next run however long ago its last entry was; once claimed, the
    active alert keeps it in until it recovers."""
    had_credits = Exists(Holding.objects.filter(account__organization=OuterRef("pk")))
    figures = Exists(
        Account.objects.filter(organization=OuterRef("pk")).filter(Q(balance__gt=0) | Q(held__gt=0))
    )
    rows = (
        Organization.objects.filter(had_credits)
        .annotate(figures=figures)
        .order_by()
        .values_list("pk", "low_balance_threshold", "figures")
    )
    checked, idle = set(), []
    for pk, threshold, has_figures in rows:
        if threshold > 0 or has_figures:
            checked.add(pk)
        else:
            idle.append(pk)
    if idle:
        # Apart, for the few idle ones, by (organization, key): asked of every organization
        # at once, the planner reads the whole alert table, which grows with every expiry
        # reminder ever sent.
        checked.update(
            Alert.objects.filter(
                organization_id__in=idle, key__in=[LOW_BALANCE, OVER_ASSIGNED], active=True
            )
            .order_by()
            .values_list("organization_id", flat=True)
        )
    return sorted(checked)
