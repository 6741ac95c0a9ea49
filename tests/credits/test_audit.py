"""The ledger audit on a real PostgreSQL: the daily totals it proves, and its two scopes.

`full` proves all history; `recent` what the entries since the checkpoint (the last good run
before the last good one) touched. The cached figures are changed here with plain SQL, as a
stray shell session would: the ledger's own rows refuse it (triggers), the rest does not.
"""

import datetime as dt
import threading

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from credits import services
from credits.audit import checkpoint, checkpoint_run, ledger_audit
from credits.models import AuditRun, DailyTotal, Holding, LedgerEntry
from tests.accounts.factories import UserFactory
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, key, redeem

pytestmark = pytest.mark.django_db

RECENT, FULL = AuditRun.Scope.RECENT, AuditRun.Scope.FULL
# Midday UTC: every entry of a test falls on one UTC day unless it says otherwise.
NOON = dt.datetime(2026, 6, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _noon():
    with time_machine.travel(NOON):
        yield


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


def sql(statement: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def described(report, description: str) -> list[str]:
    return [v for v in report.violations if v.startswith(f"{description}: ")]


def checkpointed() -> None:
    """Two good runs: what exists now is behind the checkpoint of the next recent run."""
    assert ledger_audit().ok
    assert ledger_audit().ok


# --- Daily totals ------------------------------------------------------------------------------


def test_a_clean_ledger_has_daily_totals_that_add_up_in_both_scopes(organization, pool):
    grant(organization, 20)
    course = services.course_account(organization=organization, course=CourseFactory())
    services.credits_transfer(source=pool, destination=course, quantity=5, idempotency_key="t")
    redeem(pool, 3)
    checkpointed()
    redeem(pool, 2)
    with time_machine.travel(NOON + dt.timedelta(days=1)):  # the next UTC day
        redeem(course, 1)
    assert ledger_audit().ok
    report = ledger_audit(scope=RECENT)
    assert report.ok, report.violations
    assert report.scope == RECENT and report.entries == 2


# Each way a daily total can go wrong, and what the audit reports. The corruption is on a
# day and account the recent entries touch (the pool, today), so both scopes must see it.
CORRUPTIONS = [
    pytest.param(
        "UPDATE credits_dailytotal SET lost = lost - 1 WHERE account_id = %(pool)s"
        " AND kind = 'redeem'",
        "daily total differs from its entries",
        id="a wrong sum",
    ),
    pytest.param(
        "DELETE FROM credits_dailytotal WHERE account_id = %(pool)s AND kind = 'grant'",
        "daily total differs from its entries",
        id="a missing row",
    ),
    pytest.param(
        "INSERT INTO credits_dailytotal (organization_id, account_id, day, kind, gained, lost)"
        " VALUES (%(org)s, %(pool)s, %(day)s, 'transfer', 4, 0)",
        "daily total differs from its entries",
        id="an extra row",
    ),
    pytest.param(
        "UPDATE credits_dailytotal SET organization_id = %(other)s WHERE account_id = %(pool)s",
        "daily total belongs to another organization than its account",
        id="another organization",
    ),
]


@pytest.mark.parametrize(("corruption", "description"), CORRUPTIONS)
@pytest.mark.parametrize("scope", [FULL, RECENT])
def test_the_audit_reports_a_daily_total_that_disagrees_with_the_entries(
    organization, other_organization, pool, scope, corruption, description
):
    grant(organization, 10)
    redeem(pool, 2)
    checkpointed()
    redeem(pool, 1)  # a recent entry on the same account and UTC day
    params = {
        "org": organization.pk,
        "other": other_organization.pk,
        "pool": pool.pk,
        "day": NOON.date(),
    }
    sql(corruption, params)
    report = ledger_audit(scope=scope)
    assert report.scope == scope
    assert described(report, description), report.violations


def test_a_daily_total_is_proved_against_all_its_days_entries_not_only_the_recent_ones(
    organization, pool
):
    grant(organization, 10)  # today, before the checkpoint
    checkpointed()
    redeem(pool, 1)  # today, after it
    # Today's grant row is right: the recent run must read the day's older entries too.
    assert ledger_audit(scope=RECENT).ok
    sql("UPDATE credits_dailytotal SET gained = gained + 1 WHERE kind = 'grant'")
    report = ledger_audit(scope=RECENT)
    assert described(report, "daily total differs from its entries")


def test_utc_days_split_the_daily_totals_at_midnight_utc(organization, pool):
    with time_machine.travel(dt.datetime(2026, 6, 10, 23, 59, tzinfo=dt.UTC)):
        grant(organization, 10)
    checkpointed()
    with time_machine.travel(dt.datetime(2026, 6, 11, 0, 1, tzinfo=dt.UTC)):
        redeem(pool, 1)
    days = sorted(DailyTotal.objects.values_list("day", "kind"))
    assert days == [(dt.date(2026, 6, 10), "grant"), (dt.date(2026, 6, 11), "redeem")]
    assert ledger_audit(scope=RECENT).ok
    assert ledger_audit().ok


def test_a_recent_run_finds_a_wrong_daily_total_of_an_old_day_through_the_accounts_sum(
    organization, pool
):
    with time_machine.travel(NOON - dt.timedelta(days=30)):
        grant(organization, 10)
    checkpointed()
    redeem(pool, 1)
    # A day the recent entries did not touch, of an account they did.
    sql("UPDATE credits_dailytotal SET gained = gained + 2 WHERE kind = 'grant'")
    report = ledger_audit(scope=RECENT)
    assert described(report, "account's daily totals do not add up to its entries")
    # The balance itself is right: it is not blamed.
    assert not described(report, "account balance differs from its entries")


# --- What a recent run proves, and what it leaves to the full one ------------------------------


def test_a_recent_run_sees_a_corrupted_figure_that_its_entries_touched(organization, pool):
    lot = grant(organization, 10)
    checkpointed()
    redeem(pool, 1)
    Holding.objects.filter(lot=lot, account=pool).update(quantity=F("quantity") + 1)
    sql("UPDATE credits_account SET balance = balance + 2 WHERE id = %s", [pool.pk])
    report = ledger_audit(scope=RECENT)
    assert described(report, "holding differs from its entries")
    assert described(report, "account balance differs from its entries")
    assert described(report, "account balance differs from its holdings")
    assert described(
        report, "lot quantity is not what accounts hold + consumed + expired + revoked"
    )


def test_a_recent_run_sees_held_credits_of_an_account_whose_holds_moved(organization, pool):
    grant(organization, 10)
    checkpointed()
    hold(pool, 3)  # no entry: found through the hold's transaction
    sql("UPDATE credits_account SET held = held + 1 WHERE id = %s", [pool.pk])
    report = ledger_audit(scope=RECENT)
    assert report.entries == 0
    assert described(report, "account held figure differs from its active holds")


def test_a_recent_run_leaves_an_untouched_corrupted_holding_to_the_weekly_full_run(
    organization, other_organization, pool
):
    # The intended trade-off: the nightly run costs the night's entries, so a holding that
    # no entry has touched since the checkpoint is proved only by the weekly full run.
    old = grant(other_organization, 5)
    grant(organization, 5)
    checkpointed()
    redeem(pool, 1)  # recent entries in the first organization only
    Holding.objects.filter(lot=old).update(quantity=F("quantity") + 1)
    recent = ledger_audit(scope=RECENT)
    assert recent.ok
    assert recent.accounts == 1 and recent.entries == 1
    full = ledger_audit(scope=FULL)
    assert described(full, "holding differs from its entries")
    assert described(full, "account balance differs from its holdings")


def test_a_recent_run_finds_a_lot_marked_expired_whose_expiry_wrote_no_entry(organization):
    lot = grant(organization, 5, expires_at=NOON + dt.timedelta(hours=1))
    checkpointed()
    with time_machine.travel(NOON + dt.timedelta(hours=2)):
        # Marked expired by hand, its credits left where they were: no entry names the lot.
        sql(
            "UPDATE credits_lot SET expired_at = %s WHERE id = %s",
            [NOON + dt.timedelta(hours=2), lot.pk],
        )
        report = ledger_audit(scope=RECENT)
    assert report.entries == 0
    assert described(report, "expired or revoked lot still held")


def test_a_recent_run_checks_a_forged_reversal(organization, pool):
    lot = grant(organization, 10)
    original = redeem(pool, 2)
    checkpointed()
    with connection.cursor() as cursor:  # past the API: a reversal of 3 for a redemption of 2
        cursor.execute(
            "INSERT INTO credits_ledgertransaction (organization_id, kind, idempotency_key,"
            " fingerprint, account_id, quantity, reference, memo, created_at, reversal_of_id)"
            " VALUES (%s, 'reverse', 'forged', '', %s, 3, '', '', now(), %s) RETURNING id",
            [organization.pk, pool.pk, original.pk],
        )
        (forged,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity,"
            " created_at) VALUES (%s, %s, %s, 3, now())",
            [forged, pool.pk, lot.pk],
        )
        cursor.execute(
            "UPDATE credits_holding SET quantity = quantity + 3 WHERE lot_id = %s", [lot.pk]
        )
        cursor.execute("UPDATE credits_account SET balance = balance + 3 WHERE id = %s", [pool.pk])
    report = ledger_audit(scope=RECENT)
    assert described(report, "reversals give back more than their original took")
    assert all("reversal" in v for v in report.violations), report.violations


def test_every_kind_of_transaction_since_the_checkpoint_passes_a_recent_run(organization, pool):
    staff = UserFactory(is_staff=True)
    refunded = grant(organization, 8)
    soon = grant(organization, 4, expires_at=NOON + dt.timedelta(hours=1))
    checkpointed()
    grant(organization, 30)
    course = services.course_account(organization=organization, course=CourseFactory())
    services.credits_transfer(source=pool, destination=course, quantity=6, idempotency_key="t")
    taken = redeem(pool, 5)
    services.credits_reverse(original=taken, quantity=2, reason="level", idempotency_key="r")
    captured, released = hold(pool, 2), hold(pool, 1)
    services.hold_capture(hold=captured)
    services.hold_release(hold=released)
    revocation = services.lot_revoke(
        lot=refunded, reason="dispute", idempotency_key="v", quantity=3
    )
    services.lot_restore(revocation=revocation, reason="dispute won")
    services.credits_adjust(
        account=pool, quantity=-1, reason="typo", actor=staff, idempotency_key=key("adjust")
    )
    with time_machine.travel(NOON + dt.timedelta(hours=2)):
        assert services.lots_expire() == 1
        report = ledger_audit(scope=RECENT)
        assert report.ok, report.violations
        assert report.scope == RECENT and report.entries > 5
        assert ledger_audit().ok
    assert soon.holdings.filter(live=True).count() == 0


# --- The checkpoint ----------------------------------------------------------------------------


def test_the_checkpoint_is_the_good_run_before_the_last_good_one(organization, pool):
    assert checkpoint() == 0
    grant(organization, 10)
    first = ledger_audit()
    assert checkpoint() == 0  # one good run: no overlap to be had yet
    # So a recent run proves everything, and says so.
    assert ledger_audit(scope=RECENT).scope == FULL
    second = AuditRun.objects.order_by("-started_at").first()
    assert checkpoint() == first.to_entry_id
    redeem(pool, 1)
    sql("UPDATE credits_account SET balance = balance + 1 WHERE id = %s", [pool.pk])
    bad = ledger_audit(scope=RECENT)
    assert not bad.ok and bad.from_entry_id == first.to_entry_id
    # A run that found problems is no checkpoint: the next proves the same entries again.
    assert checkpoint() == first.to_entry_id
    assert not ledger_audit(scope=RECENT).ok
    sql("UPDATE credits_account SET balance = balance - 1 WHERE id = %s", [pool.pk])
    # Nor is a run that never finished (killed by its time limit).
    AuditRun.objects.create(scope=RECENT, started_at=timezone.now(), to_entry_id=10**9, problems=0)
    assert checkpoint() == first.to_entry_id
    fixed = ledger_audit(scope=RECENT)
    assert fixed.ok and fixed.from_entry_id == first.to_entry_id
    assert checkpoint() == second.to_entry_id


def test_each_run_is_recorded_with_what_it_proved(organization, pool):
    grant(organization, 10)
    checkpointed()
    redeem(pool, 2)
    sql("UPDATE credits_account SET held = held + 1 WHERE id = %s", [pool.pk])
    report = ledger_audit(scope=RECENT)
    run = AuditRun.objects.order_by("-started_at", "-id").first()
    assert run.scope == RECENT and run.finished_at >= run.started_at
    assert (run.from_entry_id, run.to_entry_id) == (report.from_entry_id, report.to_entry_id)
    assert run.to_entry_id == LedgerEntry.objects.latest("id").id
    assert run.problems == len(report.violations) == 1


@pytest.mark.django_db(transaction=True)
def test_an_entry_committed_after_a_run_began_is_proved_by_the_next_run(
    organization, other_organization
):
    """Ids are drawn at insert, rows appear at commit: an entry whose transaction was still
    open when a run read max(id) has an id inside that run's range and was not seen by it.
    The next run starts from the checkpoint before that run, so it proves it."""
    grant(organization, 5)
    checkpointed()
    written, commit = threading.Event(), threading.Event()
    late = {}

    def slow_grant() -> None:
        try:
            with transaction.atomic():
                lot = grant(other_organization, 3)
                late["lot"] = lot
                late["entry"] = LedgerEntry.objects.get(lot=lot).pk
                written.set()
                assert commit.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_grant)
    thread.start()
    try:
        assert written.wait(30)
        grant(organization, 7)  # a later id, committed first
        blind = ledger_audit(scope=RECENT)
    finally:
        commit.set()
        thread.join(30)
    assert blind.ok
    # Inside the range that run proved, yet unseen by it: a checkpoint at its own end
    # would skip this entry for ever.
    assert blind.from_entry_id < late["entry"] <= blind.to_entry_id
    Holding.objects.filter(lot=late["lot"]).update(quantity=F("quantity") + 1)
    report = ledger_audit(scope=RECENT)
    assert report.from_entry_id < late["entry"]
    assert described(report, "holding differs from its entries")


# --- The command -------------------------------------------------------------------------------


def test_the_command_audits_all_history_unless_asked_for_recent(organization, pool, capsys):
    grant(organization, 10)
    call_command("credits_audit")
    assert capsys.readouterr().out == "ledger ok: 1 accounts, 1 entries\n"
    call_command("credits_audit", "--recent")  # no checkpoint yet: all history again
    assert AuditRun.objects.filter(scope=FULL).count() == 2
    redeem(pool, 1)
    call_command("credits_audit", "--recent")
    entry = LedgerEntry.objects.latest("id").id
    out = capsys.readouterr().out
    assert out.endswith(f"ledger ok: 1 accounts, 1 entries (recent: entries {entry} to {entry})\n")
    sql("UPDATE credits_holding SET quantity = quantity + 1")
    with pytest.raises(CommandError, match="violation"):
        call_command("credits_audit")
    assert "holding differs from its entries" in capsys.readouterr().err
    assert AuditRun.objects.filter(scope=RECENT).count() == 1


def test_checkpoint_run_is_none_before_two_good_runs(organization):
    assert checkpoint_run() is None
    ledger_audit()
    assert checkpoint_run() is None
    ledger_audit()
    assert checkpoint_run() is not None
