import datetime as dt
import uuid

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits import selectors
from credits import services as ledger
from credits.audit import ledger_audit
from credits.models import Hold, LedgerTransaction, Overage
from credits.services import InsufficientCredits
from tests.accounts.factories import UserFactory
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.training.factories import plan_with
from training.learner import services as learner_steps
from training.models import Enrollment
from training.plans import level_changes
from training.plans import services as plans

pytestmark = pytest.mark.django_db


def balance(organization):
    return selectors.organization_balance(organization=organization)


def confirm(plan, user, token=None):
    """How many people one click confirmed."""
    return plans.plan_confirm(plan=plan, user=user, token=token or str(uuid.uuid4())).people


@pytest.fixture(autouse=True)
def _audit():
    yield
    report = ledger_audit()
    assert report.ok, report.violations


def test_confirm_redeems_people_times_items_and_emails_them(
    organization, admin, django_capture_on_commit_callbacks
):
    grant(organization, 20)
    plan = plan_with(organization, admin, emails=["a@acme.test", "b@acme.test"], costs=(1, 2))
    with django_capture_on_commit_callbacks(execute=True):
        assert confirm(plan, admin) == 2
    assert balance(organization).total == 14
    assert Enrollment.objects.filter(participant__plan=plan).count() == 4
    assert sorted(m.to[0] for m in mail.outbox) == ["a@acme.test", "b@acme.test"]
    assert "Accept and set your password" in mail.outbox[0].body
    plan.refresh_from_db()
    assert plan.status == "confirmed"


def test_a_double_click_or_retry_charges_once_and_a_second_tab_charges_nothing(organization, admin):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["a@acme.test", "b@acme.test"])
    seen = plans.plan_cost(plan=plan).snapshot
    token = str(uuid.uuid4())
    first = plans.plan_confirm(plan=plan, user=admin, token=token, snapshot=seen)
    again = plans.plan_confirm(plan=plan, user=admin, token=token, snapshot=seen)
    assert (first.people, first.replayed) == (2, False)
    assert (again.people, again.credits, again.replayed) == (2, 2, True)  # the same click
    with pytest.raises(plans.PlanChanged, match="already confirmed"):  # another tab
        plans.plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()), snapshot=seen)
    assert balance(organization).total == 8
    assert LedgerTransaction.objects.filter(kind="redeem").count() == 1


def test_people_added_after_confirmation_are_confirmed_alone_by_the_next_click(organization, admin):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["a@acme.test"])
    confirm(plan, admin)
    plans.participants_add(plan=plan, rows=["late@acme.test"])
    assert plans.plan_cost(plan=plan).total == 1
    assert confirm(plan, admin) == 1
    assert balance(organization).total == 8


def test_short_under_policy_buy_changes_nothing_and_names_the_shortfall(organization, admin):
    grant(organization, 3)
    plan = plan_with(organization, admin, emails=[f"p{n}@acme.test" for n in range(5)])
    with pytest.raises(InsufficientCredits) as short:
        confirm(plan, admin)
    assert short.value.shortfall == 2
    assert balance(organization).total == 3
    assert not Enrollment.objects.exists()
    assert plan.participants.filter(confirmed_at__isnull=False).count() == 0


def test_short_under_bill_overage_records_the_overage(organization, admin):
    organization.when_short = "bill_overage"
    organization.save()
    grant(organization, 3)
    plan = plan_with(organization, admin, emails=[f"p{n}@acme.test" for n in range(5)])
    confirm(plan, admin)
    assert balance(organization).total == 0
    assert Overage.objects.get().quantity == 2


@pytest.fixture
def start_policy(organization):
    organization.redemption_point = "start"
    organization.save()
    return organization


def test_policy_start_holds_until_the_learner_starts(start_policy, admin, learner):
    grant(start_policy, 10)
    plan = plan_with(start_policy, admin, emails=[learner.email, "x@acme.test"], costs=(2,))
    confirm(plan, admin)
    figures = balance(start_policy)
    assert (figures.total, figures.held, figures.available) == (10, 4, 6)
    enrollment = Enrollment.objects.get(participant__user=learner)
    learner_steps.enrollment_start(enrollment=enrollment, user=learner)
    learner_steps.enrollment_start(enrollment=enrollment, user=learner)  # a second click
    figures = balance(start_policy)
    assert (figures.total, figures.held) == (8, 2)


def test_removing_someone_under_policy_start_frees_their_credits(start_policy, admin):
    grant(start_policy, 10)
    plan = plan_with(start_policy, admin, emails=["left@acme.test"], costs=(3,))
    confirm(plan, admin)
    message = plans.participant_remove(participant=plan.participants.get(), user=admin)
    assert "3 assigned credits are available again" in message
    assert balance(start_policy).available == 10
    assert Hold.objects.get().status == "released"


def test_removing_someone_under_policy_confirm_says_credits_are_not_returned(organization, admin):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["left@acme.test"])
    confirm(plan, admin)
    message = plans.participant_remove(participant=plan.participants.get(), user=admin)
    assert "not returned" in message
    assert balance(organization).total == 9


def test_someone_who_started_cannot_be_removed(start_policy, admin, learner):
    grant(start_policy, 10)
    plan = plan_with(start_policy, admin, emails=[learner.email])
    confirm(plan, admin)
    learner_steps.enrollment_start(enrollment=Enrollment.objects.get(), user=learner)
    with pytest.raises(plans.PlanRefused, match="has started"):
        plans.participant_remove(participant=plan.participants.get(), user=admin)


def test_pasted_and_csv_rows_are_checked_and_the_good_ones_kept(organization, admin):
    plan = plan_with(organization, admin)
    result = plans.participants_add_text(plan=plan, text="a@acme.test, nope\nA@acme.test")
    assert result.added == ["a@acme.test"]
    assert result.rejected == [
        ("nope", "not an email address"),
        ("A@acme.test", "already in this plan"),
    ]
    csv = b"name,email\nBea,b@acme.test\nNo mail,\nCid,c@acme\n"
    result = plans.participants_add_csv(plan=plan, data=csv)
    assert result.added == ["b@acme.test"]
    assert [reason for _, reason in result.rejected] == ["not an email address"] * 2


@pytest.mark.parametrize("policy", ["confirm", "start"])
def test_confirming_1000_people_is_a_constant_number_of_statements(organization, admin, policy):
    organization.redemption_point = policy
    organization.save()
    grant(organization, 5_000)

    def statements(people: int) -> int:
        plan = plan_with(
            organization, admin, emails=[f"p{uuid.uuid4().hex}@acme.test" for _ in range(people)]
        )
        with CaptureQueriesContext(connection) as captured:
            confirm(plan, admin)
        return len(captured.captured_queries)

    few, many = statements(10), statements(1_000)
    assert few == many
    assert many <= 20


def test_support_changes_a_level_within_7_days_and_the_difference_is_settled(organization, admin):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["a@acme.test"], costs=(1,))
    confirm(plan, admin)
    enrollment = Enrollment.objects.get()
    harder = LevelFactory(course=enrollment.level.course, credit_cost=3)
    staff = UserFactory(is_staff=True)
    level_changes.enrollment_change_level(
        enrollment=enrollment, level=harder, staff=staff, reason="placement test"
    )
    assert balance(organization).total == 7
    change = enrollment.level_changes.get()
    assert (change.staff, change.reason, change.credits_moved) == (staff, "placement test", 2)
    charge = LedgerTransaction.objects.get(kind="redeem", idempotency_key__startswith="level-")
    assert (charge, charge.actor, charge.quantity) == (change.charge, staff, 2)


def test_a_level_change_after_7_days_is_refused(organization, admin):
    grant(organization, 10)
    start = timezone.localdate()
    plan = plan_with(organization, admin, emails=["a@acme.test"], start=start)
    confirm(plan, admin)
    enrollment = Enrollment.objects.get()
    other = LevelFactory(course=enrollment.level.course, credit_cost=1)
    with (
        time_machine.travel(timezone.now() + dt.timedelta(days=9)),
        pytest.raises(plans.PlanRefused, match="7 days after the plan started"),
    ):
        level_changes.enrollment_change_level(
            enrollment=enrollment, level=other, staff=UserFactory(is_staff=True), reason="late"
        )
    assert ledger.pool_account(organization=organization).balance == 9


def test_a_plan_completes_when_everyone_has_finished(start_policy, admin, learner):
    grant(start_policy, 10)
    plan = plan_with(start_policy, admin, emails=[learner.email, "gone@acme.test"])
    confirm(plan, admin)
    plans.participant_remove(participant=plan.participants.get(email="gone@acme.test"), user=admin)
    enrollment = Enrollment.objects.get(participant__user=learner)
    enrollment = learner_steps.enrollment_start(enrollment=enrollment, user=learner)
    learner_steps.enrollment_progress(enrollment=enrollment, progress=50)
    plan.refresh_from_db()
    assert plan.status == "confirmed"
    learner_steps.enrollment_progress(enrollment=enrollment, progress=100)
    plan.refresh_from_db()
    assert plan.status == "completed"


def test_only_a_draft_can_be_cancelled(organization, admin):
    grant(organization, 10)
    draft = plan_with(organization, admin, emails=["a@acme.test"])
    plans.plan_cancel(plan=draft)
    draft.refresh_from_db()
    assert draft.status == "cancelled"
    with pytest.raises(plans.PlanRefused, match="closed"):
        confirm(draft, admin)
    confirmed = plan_with(organization, admin, emails=["b@acme.test"])
    confirm(confirmed, admin)
    with pytest.raises(plans.PlanRefused, match="Only a draft plan"):
        plans.plan_cancel(plan=confirmed)
