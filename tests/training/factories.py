import datetime as dt
import uuid

from django.utils import timezone

from tests.catalog.factories import LevelFactory
from training.models import PlanItem, TrainingPlan
from training.plans.services import participants_add


def plan_with(organization, creator, *, emails=(), costs=(1,), start=None) -> TrainingPlan:
    plan = TrainingPlan.objects.create(
        organization=organization,
        name="Onboarding",
        start_date=start or timezone.localdate() + dt.timedelta(days=1),
        created_by=creator,
    )
    for cost in costs:
        PlanItem.objects.create(plan=plan, level=LevelFactory(credit_cost=cost))
    if emails:
        participants_add(plan=plan, rows=list(emails))
    return plan


def confirm_form(plan: TrainingPlan) -> dict:
    """What the plan page's Confirm users form posts: a fresh token and the seats it shows."""
    from training.plans.services import plan_cost

    return {"token": str(uuid.uuid4()), "snapshot": plan_cost(plan=plan).snapshot}
