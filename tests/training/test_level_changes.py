"""Support changes a learner's level (within 7 days of the plan's start): every change is a
LevelChange whose id keys its ledger transactions, a dearer level is charged, a cheaper one
gives credits back into the lots they came from, and every refusal is a message."""

import datetime as dt
import itertools
import uuid
from collections import Counter

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from credits import selectors
from credits import services as ledger
from credits.audit import ledger_audit
from credits.models import Hold, LedgerEntry, LedgerTransaction, Lot, Overage
from tests.accounts.factories import UserFactory
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.support.threads import run_threads
from tests.training.factories import plan_with
from training.learner import services as learner_steps
from training.models import Enrollment, LevelChange
from training.plans import level_changes
from training.plans import services as plans

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:training_enrollment_changelist")


@pytest.fixture(autouse=True)
def _audit_after_each_test():
    yield
    report = ledger_audit()
    assert report.ok, report.violations


@pytest.fixture
def staff():
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def support(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def start_policy(organization):
    organization.redemption_point = "start"
    organization.save()
    return organization


def enroll(organization, admin, *, cost=1, start=None):
    """One person confirmed in a one-item plan starting today (so level changes are open)."""
    plan = plan_with(
        organization, admin, emails=["a@acme.test"], costs=(cost,), start=start or _today()
    )
    plans.plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()))
    return Enrollment.objects.get(participant__plan=plan)


def _today():
    return timezone.localdate()


def pool_of(organization):
    return ledger.pool_account(organization=organization)


def figures(organization):
    """The pool as every page shows it, checked against its own cached figures."""
    pool = pool_of(organization)
    balance = selectors.account_balance(account=pool)
    assert (pool.balance, pool.held) == (balance.total, balance.held)
    return balance


def change(enrollment, level, staff, reason="placement"):
    enrollment.refresh_from_db()
    return level_changes.enrollment_change_level(
        enrollment=enrollment, level=level, staff=staff, reason=reason
    )


def admin_change(support, enrollment, level, reason="placement"):
    return support.post(
        CHANGELIST,
        {
            "action": "change_level",
            "_selected_action": [enrollment.pk],
            "apply": "1",
            "level": level.pk,
            "reason": reason,
        },
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- Back and forth: every change has keys of its own ----------------------------------------


def test_back_and_forth_under_policy_confirm_charges_exactly_the_final_level(
    organization, admin, staff
):
    grant(organization, 10)
    enrollment = enroll(organization, admin, cost=1)
    a, b = enrollment.level, LevelFactory(course=enrollment.level.course, credit_cost=3)
    for level in (b, a, b):
        change(enrollment, level, staff)
    enrollment.refresh_from_db()
    assert (enrollment.level, enrollment.cost) == (b, 3)
    # The ledger and the pool agree: 10 granted, 3 charged in all.
    assert figures(organization).total == 7
    spent = LedgerEntry.objects.filter(account=pool_of(organization)).exclude(
        transaction__kind="grant"
    )
    assert -sum(spent.values_list("quantity", flat=True)) == 3
    changes = list(enrollment.level_changes.order_by("pk"))
    assert [c.credits_moved for c in changes] == [2, -2, 2]
    keys = LedgerTransaction.objects.filter(idempotency_key__startswith="level-change:")
    assert keys.count() == 3
    assert all(str(c.pk) in (c.charge or c.reversals.get()).idempotency_key for c in changes)


def test_back_and_forth_under_policy_start_leaves_one_hold_and_the_learner_starts(
    start_policy, admin, staff, learner
):
    grant(start_policy, 10)
    enrollment = enroll(start_policy, admin, cost=1)
    a, b = enrollment.level, LevelFactory(course=enrollment.level.course, credit_cost=3)
    for level in (b, a, b):
        change(enrollment, level, staff)
    enrollment.refresh_from_db()
    assert (enrollment.hold.status, enrollment.hold.quantity) == ("active", 3)
    assert Hold.objects.filter(status="active").count() == 1
    assert (figures(start_policy).total, figures(start_policy).held) == (10, 3)

    learner_steps.enrollment_start(enrollment=enrollment, user=learner)
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.hold.status) == ("started", "captured")
    balance = figures(start_policy)
    assert (balance.total, balance.held) == (7, 0)


def test_back_and_forth_after_the_learner_started_charges_exactly_the_final_level(
    start_policy, admin, staff, learner
):
    grant(start_policy, 10)
    enrollment = enroll(start_policy, admin, cost=2)
    learner_steps.enrollment_start(enrollment=enrollment, user=learner)
    a, b = enrollment.level, LevelFactory(course=enrollment.level.course, credit_cost=5)
    for level in (b, a, b, a):
        change(enrollment, level, staff)
    assert figures(start_policy).total == 8
    # The cheaper levels were given back from the level changes' own charges first.
    capture = enrollment.hold.resolved_by
    assert not capture.reversals.exists()
    assert Lot.objects.count() == 1


def test_a_hold_left_released_by_the_old_repeated_key_gets_a_new_one(
    start_policy, admin, staff, learner
):
    # What the old key (`enrollment:<id>:level:<from>-><to>`) left behind: an enrollment
    # still assigned whose hold was released.
    grant(start_policy, 10)
    enrollment = enroll(start_policy, admin, cost=1)
    ledger.hold_release(hold=enrollment.hold, actor=staff)
    other = LevelFactory(course=enrollment.level.course, credit_cost=2)
    made = change(enrollment, other, staff)
    assert (made.released, made.hold.quantity) == (None, 2)
    learner_steps.enrollment_start(enrollment=enrollment, user=learner)
    assert figures(start_policy).total == 8


# --- A dearer level with too few credits ------------------------------------------------------


def test_an_upgrade_with_an_empty_pool_is_a_message_in_the_admin_and_changes_nothing(
    support, organization, admin
):
    grant(organization, 1)
    enrollment = enroll(organization, admin, cost=1)
    before = (enrollment.level_id, enrollment.cost)
    dearer = LevelFactory(course=enrollment.level.course, credit_cost=4)
    transactions = LedgerTransaction.objects.count()

    response = admin_change(support, enrollment, dearer)

    assert response.status_code == 200
    (message,) = messages_of(response)
    assert "Not enough credits" in message and "3 credits short" in message
    enrollment.refresh_from_db()
    assert (enrollment.level_id, enrollment.cost) == before
    assert not LevelChange.objects.exists()
    assert LedgerTransaction.objects.count() == transactions
    assert figures(organization).total == 0


def test_an_upgrade_under_policy_start_with_too_few_credits_is_a_message(
    support, start_policy, admin
):
    grant(start_policy, 2)
    enrollment = enroll(start_policy, admin, cost=2)
    dearer = LevelFactory(course=enrollment.level.course, credit_cost=3)
    response = admin_change(support, enrollment, dearer)
    (message,) = messages_of(response)
    assert "1 credit short" in message
    enrollment.refresh_from_db()
    assert (enrollment.cost, enrollment.hold.status) == (2, "active")


def test_an_upgrade_is_billed_as_overage_when_the_organization_allows_it(
    support, organization, admin
):
    organization.when_short = "bill_overage"
    organization.save()
    grant(organization, 1)
    enrollment = enroll(organization, admin, cost=1)
    dearer = LevelFactory(course=enrollment.level.course, credit_cost=4)
    response = admin_change(support, enrollment, dearer)
    assert "moved to" in messages_of(response)[0]
    made = LevelChange.objects.get()
    assert Overage.objects.get(transaction=made.charge).quantity == 3


# --- A cheaper level gives credits back where they came from ----------------------------------


def test_a_downgrade_returns_credits_to_the_original_lot_with_its_expiry(
    support, organization, admin
):
    lot = grant(organization, 10, days_ago=30)
    enrollment = enroll(organization, admin, cost=3)
    cheaper = LevelFactory(course=enrollment.level.course, credit_cost=1)

    response = admin_change(support, enrollment, cheaper)

    assert list(Lot.objects.values_list("pk", "expires_at")) == [(lot.pk, lot.expires_at)]
    assert figures(organization).total == 9
    assert "2 credits given back" in messages_of(response)[0]
    made = LevelChange.objects.get()
    (reversal,) = made.reversals.all()
    assert reversal.reversal_of == enrollment.redemption
    assert list(reversal.entries.values_list("lot_id", "quantity")) == [(lot.pk, 2)]
    assert made.credits_moved == -2 and made.credits_not_returned == 0


def test_a_downgrade_gives_back_from_the_newest_charges_first(organization, admin, staff):
    grant(organization, 20)
    enrollment = enroll(organization, admin, cost=3)
    course = enrollment.level.course
    four, one = (LevelFactory(course=course, credit_cost=cost) for cost in (4, 1))
    upgrade = change(enrollment, four, staff)
    downgrade = change(enrollment, one, staff)  # 3 back: 1 from the upgrade, 2 from the plan's
    assert sorted((r.reversal_of_id, r.quantity) for r in downgrade.reversals.all()) == sorted(
        [(upgrade.charge_id, 1), (enrollment.redemption_id, 2)]
    )
    assert figures(organization).total == 19


def test_a_downgrade_after_the_lot_expired_gives_nothing_back_and_says_so(
    support, organization, admin
):
    now = timezone.now()
    grant(organization, 10, expires_at=now + dt.timedelta(days=3))
    enrollment = enroll(organization, admin, cost=3)
    cheaper = LevelFactory(course=enrollment.level.course, credit_cost=1)
    with time_machine.travel(now + dt.timedelta(days=5)):
        ledger.lots_expire()
        response = admin_change(support, enrollment, cheaper)
    assert "2 credits not given back" in messages_of(response)[0]
    made = LevelChange.objects.get()
    assert (made.credits_moved, made.credits_not_returned) == (0, 2)
    assert figures(organization).total == 0
    enrollment.refresh_from_db()
    assert enrollment.cost == 1


def test_a_change_settled_by_the_old_adjustment_gives_back_only_what_the_plan_charge_has(
    organization, admin, staff
):
    grant(organization, 10)
    enrollment = enroll(organization, admin, cost=1)
    course = enrollment.level.course
    dearer, cheaper = (LevelFactory(course=course, credit_cost=cost) for cost in (4, 1))
    # What the old code did: 3 more deducted by adjustment, no LevelChange recorded.
    ledger.credits_adjust(
        account=pool_of(organization), quantity=-3, reason="old", actor=staff, idempotency_key="o"
    )
    Enrollment.objects.filter(pk=enrollment.pk).update(level=dearer, cost=4)

    made = change(enrollment, cheaper, staff)

    # The plan's redemption was 1 credit: that comes back, the rest is said not to.
    assert (made.credits_moved, made.credits_not_returned) == (-1, 2)
    assert figures(organization).total == 7


# --- Refusals ---------------------------------------------------------------------------------


def test_refusals_change_nothing(organization, admin, staff):
    grant(organization, 10)
    enrollment = enroll(organization, admin, cost=2)
    other_course = LevelFactory(credit_cost=1)
    for level, reason, refusal in [
        (other_course, "x", "same course"),
        (enrollment.level, "x", "already the enrollment's level"),
        (LevelFactory(course=enrollment.level.course), "   ", "Give a reason"),
    ]:
        with pytest.raises(plans.PlanRefused, match=refusal):
            change(enrollment, level, staff, reason=reason)
    assert not LevelChange.objects.exists()
    assert figures(organization).total == 8


def test_after_7_days_in_the_organizations_time_zone_it_is_too_late(organization, admin, staff):
    with time_machine.travel(dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)):
        grant(organization, 10)
        enrollment = enroll(organization, admin, cost=2, start=dt.date(2026, 3, 2))
    other = LevelFactory(course=enrollment.level.course, credit_cost=1)
    # The 7th day after the start ends at midnight in New York: 04:00 UTC (summer time).
    with time_machine.travel(dt.datetime(2026, 3, 10, 3, 59, tzinfo=dt.UTC)):
        change(enrollment, other, staff)
    with (
        time_machine.travel(dt.datetime(2026, 3, 10, 4, 1, tzinfo=dt.UTC)),
        pytest.raises(plans.PlanRefused, match=r"until Mar 9, 2026 .* too late"),
    ):
        change(enrollment, enrollment.level.course.levels.exclude(pk=other.pk).get(), staff)


def test_a_removed_enrollment_is_refused(start_policy, admin, staff):
    grant(start_policy, 10)
    enrollment = enroll(start_policy, admin, cost=2)
    plans.participant_remove(participant=enrollment.participant, user=admin)
    with pytest.raises(plans.PlanRefused, match="removed"):
        change(enrollment, LevelFactory(course=enrollment.level.course, credit_cost=1), staff)


def test_the_admin_refuses_an_empty_reason_with_the_form(support, organization, admin):
    grant(organization, 10)
    enrollment = enroll(organization, admin, cost=2)
    response = admin_change(support, enrollment, LevelFactory(course=enrollment.level.course), "")
    assert response.status_code == 200
    assert b"This field is required" in response.content
    assert not LevelChange.objects.exists()


def test_the_admin_shows_earlier_changes_and_the_cost_differences(
    support, organization, admin, staff
):
    grant(organization, 10)
    enrollment = enroll(organization, admin, cost=2)
    dearer = LevelFactory(course=enrollment.level.course, credit_cost=5, name="Advanced")
    change(enrollment, dearer, staff, reason="placement test")
    change(enrollment, enrollment.participant.plan.items.get().level, staff, reason="too hard")

    form = support.post(CHANGELIST, {"action": "change_level", "_selected_action": [enrollment.pk]})

    page = form.content.decode()
    assert 'data-testid="level-changes"' in page
    assert "placement test" in page and "too hard" in page
    assert "+3 (charged)" in page  # Advanced, from the current level
    assert "Advanced — 5 credits (+3)" in page


# --- Concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", ["confirm", "start"])
def test_one_enrollment_changed_from_8_threads_ends_consistent(organization, admin, policy):
    organization.redemption_point = policy
    organization.save()
    grant(organization, 30)
    enrollment = enroll(organization, admin, cost=2)
    course = enrollment.level.course
    levels = [enrollment.level, *(LevelFactory(course=course, credit_cost=c) for c in (1, 5))]
    staff = UserFactory(is_staff=True)

    def worker(n: int) -> str:
        try:
            level_changes.enrollment_change_level(
                enrollment=enrollment, level=levels[n % 3], staff=staff, reason=f"thread {n}"
            )
            return "changed"
        except plans.PlanRefused:
            return "refused"

    outcomes = Counter(run_threads(8, worker))
    enrollment.refresh_from_db()
    changes = list(enrollment.level_changes.order_by("pk"))
    assert outcomes["changed"] == len(changes) >= 1
    # One after the other: each change starts where the one before it ended.
    assert changes[0].from_level == levels[0]
    for before, after in itertools.pairwise(changes):
        assert after.from_level == before.to_level
    assert (enrollment.level, enrollment.cost) == (changes[-1].to_level, changes[-1].to_cost)
    balance = figures(organization)
    if policy == "start":
        assert (balance.total, balance.held) == (30, enrollment.cost)
        assert Hold.objects.filter(status="active").get() == enrollment.hold
    else:
        assert balance.total == 30 - enrollment.cost
    report = ledger_audit()
    assert report.ok, report.violations


@pytest.mark.django_db(transaction=True)
def test_level_changes_racing_the_learners_start_end_consistent(start_policy, admin, learner):
    grant(start_policy, 30)
    enrollment = enroll(start_policy, admin, cost=2)
    course = enrollment.level.course
    levels = [LevelFactory(course=course, credit_cost=c) for c in (1, 5, 3, 4)]
    staff = UserFactory(is_staff=True)

    def worker(n: int) -> str:
        try:
            if n % 2:
                learner_steps.enrollment_start(enrollment=enrollment, user=learner)
                return "started"
            level_changes.enrollment_change_level(
                enrollment=enrollment, level=levels[n // 2], staff=staff, reason=f"thread {n}"
            )
            return "changed"
        except plans.PlanRefused:
            return "refused"

    outcomes = Counter(run_threads(8, worker))
    assert outcomes["started"] == 4 and outcomes["refused"] == 0
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.hold.status) == ("started", "captured")
    # Whatever the order, the learner was charged the final level's cost, nothing held.
    balance = figures(start_policy)
    assert (balance.total, balance.held) == (30 - enrollment.cost, 0)
    report = ledger_audit()
    assert report.ok, report.violations


def test_a_downgrade_of_a_seat_paid_as_overage_takes_the_overage_off_the_bill(
    organization, admin, staff
):
    # Observed in review: 5 credits in the pool, a level of 10 (5 billed as overage), moved
    # down to a level of 2: 3 went back to the lot while the 5 overage stayed on the next
    # invoice — 7 credits for a level of 2 — and the admin page crashed.
    organization.when_short = "bill_overage"
    organization.save()
    grant(organization, 5)
    enrollment = enroll(organization, admin, cost=10)
    assert Overage.objects.get().quantity == 5
    cheaper = LevelFactory(course=enrollment.level.course, credit_cost=2)
    level_changes.enrollment_change_level(
        enrollment=enrollment, level=cheaper, staff=staff, reason="placement"
    )
    assert not Overage.objects.filter(billed_at__isnull=True).exists()
    assert figures(organization).total == 3  # the lot paid 2 of the level's 2 credits


def test_a_downgrade_of_billed_overage_gives_back_only_what_lots_paid(organization, admin, staff):
    organization.when_short = "bill_overage"
    organization.save()
    grant(organization, 5)
    enrollment = enroll(organization, admin, cost=10)
    Overage.objects.update(billed_at=timezone.now(), invoice_reference="in_1")
    cheaper = LevelFactory(course=enrollment.level.course, credit_cost=2)
    level_changes.enrollment_change_level(
        enrollment=enrollment, level=cheaper, staff=staff, reason="placement"
    )
    assert Overage.objects.get().quantity == 5  # invoiced already: billing credits it, not us
    assert figures(organization).total == 3
