import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone

from credits import alerts, services
from credits.forecast import forecast
from credits.tasks import balance_alerts, expiry_reminders, ledger_audit_nightly
from tests.accounts.factories import UserFactory
from tests.credits.factories import grant, hold, redeem

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


def test_low_balance_emails_once_per_crossing(organization, admin, pool):
    organization.low_balance_threshold = 10
    organization.save()
    grant(organization, 12)
    assert alerts.balance_check(organization_id=organization.pk) == []
    redeem(pool, 5)  # 7 left: crossed
    assert alerts.balance_check(organization_id=organization.pk) == ["low_balance"]
    assert alerts.balance_check(organization_id=organization.pk) == []  # still low: no repeat
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [admin.email]
    assert "7 credits left" in mail.outbox[0].subject
    assert mail.outbox[0].alternatives[0][1] == "text/html"
    grant(organization, 10)  # recovered
    alerts.balance_check(organization_id=organization.pk)
    redeem(pool, 15)  # down again: a new crossing
    assert alerts.balance_check(organization_id=organization.pk) == ["low_balance"]
    assert len(mail.outbox) == 2


def test_the_dashboard_shows_a_banner_while_the_balance_is_low(admin_client, organization):
    organization.low_balance_threshold = 10
    organization.save()
    grant(organization, 3)
    assert b"low-balance-banner" in admin_client.get("/").content
    grant(organization, 30)
    assert b"low-balance-banner" not in admin_client.get("/").content


def test_assigned_credits_about_to_exceed_the_balance_warn_once(organization, admin, pool):
    organization.low_balance_threshold = 0
    organization.save()
    grant(organization, 10)
    hold(pool, 8)
    assert alerts.balance_check(organization_id=organization.pk) == []
    hold(pool, 1)  # 90% assigned
    assert alerts.balance_check(organization_id=organization.pk) == ["over_assigned"]
    assert alerts.balance_check(organization_id=organization.pk) == []
    assert "about to exceed" in mail.outbox[0].subject


def test_over_assigned_total_is_red_on_the_dashboard(admin_client, organization, pool):
    grant(organization, 2, days_ago=364)
    hold(pool, 2)
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        services.lots_expire()
        page = admin_client.get("/").content.decode()
    assert "card-alert" in page and "Assigned credits exceed your credits." in page


def test_expiry_reminders_30_7_1_days_before_each_once(organization, admin):
    lot = grant(organization, 5)
    expires = lot.expires_at
    for days_before, expected in [(40, 0), (29, 1), (28, 0), (6, 1), (6, 0), (0.5, 1), (0.4, 0)]:
        with time_machine.travel(expires - dt.timedelta(days=days_before)):
            assert expiry_reminders() == expected, days_before
    assert len(mail.outbox) == 3
    assert "5 credits expire on" in mail.outbox[0].subject


def test_lots_spent_or_expired_get_no_reminder(organization, admin, pool):
    lot = grant(organization, 5)
    redeem(pool, 5)
    with time_machine.travel(lot.expires_at - dt.timedelta(days=3)):
        assert expiry_reminders() == 0


def test_the_balance_task_checks_every_organization(organization, admin, other_organization):
    organization.low_balance_threshold = 10
    organization.save()
    grant(organization, 1)
    grant(other_organization, 100)
    assert balance_alerts() == 2
    assert len(mail.outbox) == 1


def test_the_nightly_audit_reports_violations_to_staff(organization, caplog):
    staff = UserFactory(is_staff=True)
    grant(organization, 5)
    assert ledger_audit_nightly() is True
    with connection.cursor() as cursor:  # break a cached figure behind the services' back
        cursor.execute("UPDATE credits_account SET balance = balance + 1")
    assert ledger_audit_nightly() is False
    assert mail.outbox[-1].to == [staff.email]
    assert "violation" in mail.outbox[-1].subject
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_forecast_says_plainly_when_there_is_too_little_history(organization, pool):
    grant(organization, 100)
    redeem(pool, 5)
    assert forecast(organization=organization).enough_history is False


def test_forecast_runs_out_and_counts_what_expires_unused_first(organization, pool):
    start = timezone.now()
    with time_machine.travel(start - dt.timedelta(days=90)):
        grant(organization, 100)  # lot A: expires in 275 days from now
        grant(organization, 400, expires_at=start + dt.timedelta(days=20))  # lot B
    for day in range(90):  # one credit a day for 90 days, from the soonest lot (B)
        with time_machine.travel(start - dt.timedelta(days=90 - day)):
            redeem(pool, 1)
    result = forecast(organization=organization, now=start)
    assert result.enough_history and result.daily_rate == 1.0
    # B keeps 310; days 0-19 use 20 of it before it expires on day 20, so 290 expire
    # unused; A's 100 then cover days 20-119: the last credit goes on day 119.
    assert result.expires_unused == 290
    assert result.runs_out_on == timezone.localdate(start) + dt.timedelta(days=119)
    assert result.polyline
