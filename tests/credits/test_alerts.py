import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import Membership
from credits import alerts, services
from credits.forecast import forecast
from credits.tasks import balance_alerts, ledger_audit_nightly
from outbox.models import OutboxMessage
from outbox.tasks import sweep
from tests.accounts.factories import UserFactory, member
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, redeem
from tests.outbox.backends import FlakyBackend

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Runs a job as a worker does: the emails it wrote go out once its transaction commits."""

    def run(job, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return job(*args, **kwargs)

    return run


def check(run, organization):
    return run(alerts.balance_check, organization_id=organization.pk)


def test_low_balance_emails_once_per_crossing(organization, admin, pool, run):
    organization.low_balance_threshold = 10
    organization.save()
    grant(organization, 12)
    assert check(run, organization) == []
    redeem(pool, 5)  # 7 left: crossed
    assert check(run, organization) == ["low_balance"]
    assert check(run, organization) == []  # still low: no repeat
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [admin.email]
    assert "7 credits left" in mail.outbox[0].subject
    assert mail.outbox[0].alternatives[0][1] == "text/html"
    grant(organization, 10)  # recovered
    check(run, organization)
    redeem(pool, 15)  # down again: a new crossing
    assert check(run, organization) == ["low_balance"]
    assert len(mail.outbox) == 2


def test_each_admin_gets_their_own_alert(organization, admin, run):
    other = member(organization, Membership.Role.ADMIN, email="second-admin@acme.test")
    grant(organization, 1)
    assert check(run, organization) == ["low_balance"]
    assert sorted(m.to for m in mail.outbox) == [[admin.email], [other.email]]


def test_an_alert_claimed_while_smtp_fails_is_sent_after_it_recovers(
    organization, admin, run, settings
):
    settings.EMAIL_BACKEND = "tests.outbox.backends.FlakyBackend"
    FlakyBackend.reset()
    FlakyBackend.down = True
    grant(organization, 1)
    try:
        assert check(run, organization) == ["low_balance"]  # claimed: the crossing is recorded
        assert check(run, organization) == []  # and not claimed twice
        assert mail.outbox == []
        assert "SMTPServerDisconnected" in OutboxMessage.objects.get().last_error
        FlakyBackend.down = False
        with time_machine.travel(timezone.now() + dt.timedelta(minutes=5)):
            sweep()
            sweep()
    finally:
        FlakyBackend.reset()
    assert [m.to for m in mail.outbox] == [[admin.email]]
    assert "1 credit left" in mail.outbox[0].subject


def test_the_dashboard_shows_a_banner_while_the_balance_is_low(admin_client, organization):
    organization.low_balance_threshold = 10
    organization.save()
    grant(organization, 3)
    assert b"low-balance-banner" in admin_client.get("/").content
    grant(organization, 30)
    assert b"low-balance-banner" not in admin_client.get("/").content


def test_assigned_credits_about_to_exceed_the_balance_warn_once(organization, admin, pool, run):
    organization.low_balance_threshold = 0
    organization.save()
    grant(organization, 10)
    hold(pool, 8)
    assert check(run, organization) == []
    hold(pool, 1)  # 90% assigned
    assert check(run, organization) == ["over_assigned"]
    assert check(run, organization) == []
    assert "about to exceed" in mail.outbox[0].subject


def test_over_assigned_total_is_red_on_the_dashboard(admin_client, organization, pool):
    grant(organization, 2, days_ago=364)
    hold(pool, 2)
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        services.lots_expire()
        page = admin_client.get("/").content.decode()
    assert "card-alert" in page and "Assigned credits exceed your credits." in page


# Expiry reminders: tests/credits/test_reminders.py.


def test_the_balance_task_checks_every_organization(organization, admin, other_organization, run):
    organization.low_balance_threshold = 10
    organization.save()
    grant(organization, 1)
    grant(other_organization, 100)
    assert run(balance_alerts) == 2
    assert len(mail.outbox) == 1


def test_the_nightly_audit_reports_violations_to_staff(organization, caplog, run):
    staff = UserFactory(is_staff=True)
    grant(organization, 5)
    assert run(ledger_audit_nightly) is True
    with connection.cursor() as cursor:  # break a cached figure behind the services' back
        cursor.execute("UPDATE credits_account SET balance = balance + 1")
    assert run(ledger_audit_nightly) is False
    assert run(ledger_audit_nightly) is False  # run again the same day: one email
    assert [m.to for m in mail.outbox] == [[staff.email]]
    assert "violation" in mail.outbox[-1].subject
    assert "account balance differs from its entries" in mail.outbox[-1].body
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


def test_forecast_counts_the_pool_less_its_holds_not_earmarked_credits(organization, pool):
    start = timezone.now()
    with time_machine.travel(start - dt.timedelta(days=90)):
        grant(organization, 200)
        course = services.course_account(organization=organization, course=CourseFactory())
        services.credits_transfer(
            source=pool, destination=course, quantity=100, idempotency_key="e"
        )
    for day in range(90):
        with time_machine.travel(start - dt.timedelta(days=90 - day)):
            redeem(pool, 1)
    hold(pool, 5)
    # 10 left in the pool, 5 of them promised: at one a day the last goes on day 4 (counting
    # earmarked credits and ignoring the hold would have said day 109).
    result = forecast(organization=organization, now=start)
    assert result.runs_out_on == timezone.localdate(start) + dt.timedelta(days=4)
