import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import Membership
from credits import alerts, services
from credits.forecast import forecast_compute
from credits.models import Alert, AuditRun
from credits.tasks import balance_alerts, ledger_audit_nightly
from outbox.models import OutboxMessage
from outbox.tasks import sweep
from tests.accounts.factories import OrganizationFactory, UserFactory, member
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


def forecast(*, organization, now=None):
    """The forecast beat stores, its days in the organization's zone, as the page shows it."""
    with timezone.override(zoneinfo.ZoneInfo(organization.time_zone)):
        return forecast_compute(organization_id=organization.pk, now=now or timezone.now())


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


# --- Which organizations the hourly balance task checks ----------------------------------------


def test_organizations_with_credits_keep_one_that_ran_out_with_an_active_alert(
    organization, admin, pool, run
):
    grant(organization, 5)  # below the threshold of 10: alerted
    assert check(run, organization) == ["low_balance"]
    redeem(pool, 5)  # nothing left: still alerted, still checked
    never_bought = OrganizationFactory(low_balance_threshold=10)
    services.pool_account(organization=never_bought)  # an account, no credits ever
    assert alerts.organizations_with_credits() == [organization.pk]


def test_an_organization_that_just_ran_out_is_alerted_by_the_hourly_task(
    organization, admin, pool, run
):
    grant(organization, 20)
    assert run(balance_alerts) == 1 and mail.outbox == []  # plenty: no alert yet
    redeem(pool, 20)  # down to zero in one step, never seen low
    # However long ago that last entry was, the next run still finds it.
    with time_machine.travel(timezone.now() + dt.timedelta(days=3)):
        assert organization.pk in alerts.organizations_with_credits()
        assert run(balance_alerts) == 1
    assert [m.subject for m in mail.outbox] == ["Acme Corp: 0 credits left"]


def test_an_organization_left_out_of_the_hourly_task_would_have_been_sent_nothing(
    organization, admin, pool, run
):
    organization.low_balance_threshold = 0  # never "low"
    organization.save()
    grant(organization, 5)
    assert alerts.organizations_with_credits() == [organization.pk]
    redeem(pool, 5)  # spent, nothing held, no alert active
    assert alerts.organizations_with_credits() == []
    # Its check, had it run, would have claimed and resolved nothing.
    assert check(run, organization) == []
    assert not Alert.objects.filter(organization=organization, active=True).exists()


def test_an_alert_active_when_its_threshold_drops_to_zero_is_still_resolved(
    organization, admin, pool, run
):
    grant(organization, 5)
    assert check(run, organization) == ["low_balance"]
    redeem(pool, 5)
    organization.low_balance_threshold = 0
    organization.save()
    # Nothing held, nothing left, threshold 0: only the active alert keeps it checked.
    assert alerts.organizations_with_credits() == [organization.pk]
    run(balance_alerts)
    assert alerts.active_alerts(organization=organization) == set()
    assert alerts.organizations_with_credits() == []


def test_held_credits_keep_an_organization_checked_whatever_its_threshold(
    organization, admin, pool, run
):
    organization.low_balance_threshold = 0
    organization.save()
    grant(organization, 5)
    redeem(pool, 5)
    hold(pool, 3, allow_overage=True)  # nothing left, 3 assigned all the same
    assert alerts.organizations_with_credits() == [organization.pk]
    # Available is -3: below even a threshold of 0.
    assert check(run, organization) == ["low_balance", "over_assigned"]


# --- The nightly audit: recent every night, all history weekly ---------------------------------


@pytest.fixture
def nights(run, pool):
    """nights(n): the next n nights, each a redemption then the nightly task at 03:30 UTC, as
    beat runs it; returns the scope of each night's audit run."""
    first = (timezone.now() + dt.timedelta(days=1)).replace(
        hour=3, minute=30, second=0, microsecond=0
    )
    done = 0

    def nights(count: int) -> list[str]:
        nonlocal done
        scopes = []
        for night in range(done, done + count):
            with time_machine.travel(first + dt.timedelta(days=night), tick=False):
                redeem(pool, 1)
                run(ledger_audit_nightly)
            scopes.append(AuditRun.objects.order_by("-started_at", "-id").first().scope)
        done += count
        return scopes

    return nights


def test_the_nightly_audit_proves_all_history_once_a_week(organization, nights):
    grant(organization, 100)
    # The first night has no good full run: full. The second has no checkpoint yet (one
    # good run: no overlap to be had), so it proves all history too, and counts as the
    # week's full run. Then recent nights, and a full run every 7 days after that one.
    assert nights(16) == (["full", "full"] + ["recent"] * 6 + ["full"] + ["recent"] * 6 + ["full"])
    assert not AuditRun.objects.filter(finished_at__isnull=True).exists()


def test_a_full_run_that_found_problems_runs_again_the_next_night(
    organization, other_organization, nights
):
    UserFactory(is_staff=True)
    grant(organization, 100)
    grant(other_organization, 5)
    assert nights(9)[-1] == "full"
    # A total of an organization that no entry touches from now on: only full runs see it.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE credits_dailytotal SET gained = gained + 1 WHERE organization_id = %s",
            [other_organization.pk],
        )
    assert nights(6) == ["recent"] * 6 and mail.outbox == []
    assert nights(2) == ["full", "full"]  # found, and looked for again until put right
    assert len(mail.outbox) == 2
    assert "daily total differs from its entries" in mail.outbox[-1].body
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE credits_dailytotal SET gained = gained - 1 WHERE organization_id = %s",
            [other_organization.pk],
        )
    assert nights(2) == ["full", "recent"]
    assert len(mail.outbox) == 2


def test_a_full_run_that_never_finished_is_not_retried_every_night(organization, nights):
    grant(organization, 100)
    assert nights(9)[-1] == "full"
    # The next full run killed at the task's time limit: its row stays unfinished.
    killed = AuditRun.objects.order_by("-started_at", "-id").first()
    AuditRun.objects.filter(pk=killed.pk).update(finished_at=None, problems=None)
    # Recent runs go on every night (they would have been full, and killed, each night);
    # the next full run is tried a week after the one that died.
    assert nights(7) == ["recent"] * 6 + ["full"]


# --- Expiry reminders read live holdings (more in tests/credits/test_reminders.py) -------------


def test_a_reminder_counts_what_is_left_of_a_lot_across_accounts(organization, admin, pool, run):
    lot = grant(organization, 10, expires_at=timezone.now() + dt.timedelta(days=5))
    course = services.course_account(organization=organization, course=CourseFactory())
    services.credits_transfer(source=pool, destination=course, quantity=10, idempotency_key="c")
    redeem(course, 4)
    # The pool's holding of the lot is empty now (not live); the course holds 6 of it.
    assert lot.holdings.get(account=pool).live is False
    local_morning = timezone.now().astimezone(zoneinfo.ZoneInfo(organization.time_zone))
    local_morning = local_morning.replace(hour=9) if local_morning.hour < 9 else local_morning
    with time_machine.travel(local_morning, tick=False):
        assert run(alerts.expiry_reminders_send) == 1
    assert mail.outbox[0].subject.startswith("6 credits expire")
