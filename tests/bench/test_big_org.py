"""The benchmarks' big-organization builder, scaled down: what it writes is a ledger the audit
accepts, with the shapes the benchmarks rely on, and the services keep working on it."""

import pytest
from django.db.models import Count

from bench import big_org
from credits import services
from credits.audit import ledger_audit
from credits.models import Hold, LedgerTransaction, Lot
from training.models import Assignment, Enrollment, TrainingPlan

TINY_BIG = big_org.OrgSize(
    "big",
    members=40,
    admins=2,
    managers=4,
    lots=300,
    plans=6,
    courses=4,
    largest_plan=12,
    typical_plan=5,
)
TINY_SMALL = big_org.OrgSize(
    "small",
    members=20,
    admins=1,
    managers=2,
    lots=30,
    plans=4,
    courses=2,
    largest_plan=8,
    typical_plan=5,
    plan_items=1,
)


@pytest.mark.django_db
def test_a_scaled_down_build_passes_the_audit_and_has_every_shape():
    figures = big_org.build(sizes=(TINY_SMALL, TINY_BIG), analyse=False)

    assert ledger_audit().ok
    assert figures["lots"] == {"bench-small": 30, "bench-big": 300}
    big = big_org.organization("big")
    kinds = dict(
        LedgerTransaction.objects.filter(organization=big)
        .values_list("kind")
        .annotate(n=Count("id"))
    )
    assert set(kinds) == {"grant", "transfer", "hold", "capture", "release", "redeem", "expire"}
    # About two thirds of three years' lots have expired, the rest are valid.
    expired = Lot.objects.filter(organization=big, expired_at__isnull=False).count()
    assert 180 <= expired <= 220
    holds = set(Hold.objects.filter(account__organization=big).values_list("status", flat=True))
    assert holds == {"active", "captured", "released"}
    assert set(Assignment.objects.filter(organization=big).values_list("status", flat=True)) == {
        "invited",
        "accepted",
        "started",
        "expired",
    }
    largest = TrainingPlan.objects.get(organization=big, name="Bench plan 001")
    assert largest.participants.count() == 12
    assert Enrollment.objects.filter(participant__plan=largest).count() == 12 * 2


@pytest.mark.django_db
def test_the_services_work_on_the_built_ledger():
    big_org.build(sizes=(TINY_SMALL, TINY_BIG), analyse=False)
    big = big_org.organization("big")
    pool = services.pool_account(organization=big)
    before = pool.balance

    services.credits_redeem(account=pool, quantity=5, reference="test", idempotency_key="t-1")
    services.lots_expire()

    pool.refresh_from_db()
    assert pool.balance == before - 5
    assert ledger_audit().ok
