"""Confirm users for 1,000 and 10,000 people: wall time and SQL statements of the click."""

import time
import uuid

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Membership, Organization, User
from catalog.models import Course, Level
from credits import services as ledger
from training.models import PlanItem, TrainingPlan
from training.plans import services as plans

from .support import report


def _plan(organization: Organization, admin: User, people: int) -> TrainingPlan:
    course = Course.objects.create(
        title="Bench course", slug=f"bench-{uuid.uuid4().hex[:10]}", category="Bench"
    )
    level = Level.objects.create(course=course, name="Standard", credit_cost=1)
    plan = TrainingPlan.objects.create(
        organization=organization,
        name="Bench plan",
        start_date=timezone.localdate(),
        created_by=admin,
    )
    PlanItem.objects.create(plan=plan, level=level)
    plans.participants_add(
        plan=plan, rows=[f"p{n}-{uuid.uuid4().hex[:6]}@bench.test" for n in range(people)]
    )
    return plan


def run() -> None:
    suffix = uuid.uuid4().hex[:10]
    organization = Organization.objects.create(
        name="Bench confirm", slug=f"bench-confirm-{suffix}", lot_validity_days=None
    )
    admin = User.objects.create_user(email=f"admin-{suffix}@bench.test")
    Membership.objects.create(user=admin, organization=organization, role="admin")
    ledger.lot_grant(
        organization=organization,
        quantity=1_000_000,
        source="grant",
        invoice_date=timezone.now(),
        reference="",
        idempotency_key="bench-confirm-grant",
    )
    for people in (1_000, 10_000):
        plan = _plan(organization, admin, people)
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            plans.plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()))
            seconds = time.perf_counter() - started
        report(
            bench="confirm_users",
            participants=people,
            seconds=round(seconds, 3),
            statements=len(captured.captured_queries),
        )
