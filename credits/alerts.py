"""Alerts about an organization's credits: low balance, assigned credits about to exceed
the balance (seed 002), lots about to expire, and the nightly audit. Each alert goes out once
per occurrence: the Alert row is claimed in the same transaction that decides to send, so a
job run twice (or twice at once) sends once."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organization

from . import selectors
from .audit import ledger_audit
from .models import Alert, Holding, Lot

log = logging.getLogger(__name__)

LOW_BALANCE = "low_balance"
OVER_ASSIGNED = "over_assigned"


def _send(organization: Organization, template: str, subject: str, context: dict) -> int:
    """An HTML and text email to the organization's admins, times in its own zone."""
    recipients = list(
        Membership.objects.filter(
            organization=organization, role=Membership.Role.ADMIN
        ).values_list("user__email", flat=True)
    )
    if not recipients:
        return 0
    with timezone.override(zoneinfo.ZoneInfo(organization.time_zone)):
        context = {"organization": organization, "site": settings.SITE_URL, **context}
        text = render_to_string(f"emails/{template}.txt", context)
        html = render_to_string(f"emails/{template}.html", context)
    message = EmailMultiAlternatives(subject, text, None, recipients)
    message.attach_alternative(html, "text/html")
    message.send()
    return len(recipients)


def _claim(organization: Organization, key: str, now: dt.datetime) -> bool:
    """True if this alert was not active yet (and is now): the caller sends it."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(organization=organization, key=key).first()
        if alert is not None:
            if alert.active:
                return False
            alert.active, alert.sent_at = True, now
            alert.save(update_fields=["active", "sent_at"])
            return True
        try:
            with transaction.atomic():
                Alert.objects.create(organization=organization, key=key, sent_at=now)
        except IntegrityError:  # a concurrent run claimed it first
            return False
        return True


def _resolve(organization: Organization, key: str) -> None:
    Alert.objects.filter(organization=organization, key=key, active=True).update(active=False)


def active_alerts(*, organization: Organization) -> set[str]:
    return set(
        Alert.objects.filter(organization=organization, active=True).values_list("key", flat=True)
    )


def balance_check(*, organization_id: int, now: dt.datetime | None = None) -> list[str]:
    """Low balance and over-assigned: one email when crossing, none while it lasts, and
    ready to alert again once it has recovered. Returns the alerts sent."""
    now = now or timezone.now()
    organization = Organization.objects.get(pk=organization_id)
    balance = selectors.organization_balance(organization=organization, now=now)
    share = settings.OVER_ASSIGNED_SHARE
    crossings = [
        (
            LOW_BALANCE,
            balance.available < organization.low_balance_threshold,
            f"{organization.name}: {balance.available} credits left",
        ),
        (
            OVER_ASSIGNED,
            balance.held > 0 and balance.held >= share * balance.total,
            f"{organization.name}: assigned credits are about to exceed your balance",
        ),
    ]
    context = {"balance": balance, "link": settings.SITE_URL + reverse("billing:add_credits")}
    sent = []
    for key, crossed, subject in crossings:
        if not crossed:
            _resolve(organization, key)  # recovered: the next crossing alerts again
        elif _claim(organization, key, now):
            _send(organization, key, subject, context)
            sent.append(key)
    return sent


def expiry_reminders_send(*, now: dt.datetime | None = None) -> int:
    """30, 7 and 1 days before a lot with credits left expires: one email each."""
    now = now or timezone.now()
    sent = 0
    horizon = now + dt.timedelta(days=max(settings.EXPIRY_REMINDER_DAYS))
    lots = (
        Lot.objects.filter(expired_at__isnull=True, revoked_at__isnull=True)
        .filter(expires_at__gt=now, expires_at__lte=horizon)
        .annotate(remaining=Sum("holdings__quantity"))
        .filter(remaining__gt=0)
        .select_related("organization")
    )
    for lot in lots:
        days_left = (lot.expires_at - now).total_seconds() / 86400
        # The smallest reminder day the lot is already within, sent once.
        due = [d for d in sorted(settings.EXPIRY_REMINDER_DAYS) if days_left <= d]
        if not due:
            continue
        key = f"expiry:{lot.pk}:{due[0]}"
        if _claim(lot.organization, key, now):
            _send(
                lot.organization,
                "expiry_reminder",
                f"{lot.remaining} credits expire on {lot.expires_at:%b %-d}",
                {"lot": lot, "days": due[0], "link": settings.SITE_URL + reverse("training:plans")},
            )
            sent += 1
    return sent


def nightly_audit() -> bool:
    """The ledger audit; violations are logged at error level and emailed to staff."""
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
        body = "\n".join(report.violations)
        message = EmailMultiAlternatives(
            f"Credit ledger audit: {len(report.violations)} violation(s)", body, None, staff
        )
        message.send()
    return False


def organizations_with_credits() -> list[int]:
    return list(Holding.objects.values_list("account__organization_id", flat=True).distinct())
