"""Confirm users from 16 threads at once in each organization of bench/big_org.py: plans
confirmed per second. Each thread confirms its own small draft plans (3 people, one level of
one credit) one after the other, through the view as the page's htmx button posts it, so a
confirmation costs what a click costs: the ledger's redemption, the emails into the outbox,
and the plan's part of the page rendered again. Every thread of an organization spends from
the same pool, as people of one organization do.

Threads of one process, as the issue measures them: the database work overlaps, the Python
work (the rendering above all) takes turns under the interpreter's lock."""

import os
import threading
import time
import uuid

from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, User
from training.models import TrainingPlan
from training.plans import services as plans

from . import big_org
from .pages_at_scale import logged_in
from .support import report

THREADS = 16
PER_THREAD = int(os.environ.get("BENCH_CONFIRMS_PER_THREAD", "10"))
PEOPLE = 3
CONFIRM_TARGET = {"HX-Request": "true", "HX-Target": "plan-body"}

# Draft plans as checkout and Add people leave them: one item, PEOPLE members each taking a
# seat. Learners are taken in turn, so no two of a plan are the same person.
_DRAFTS_SQL = """
WITH learners AS (
    SELECT m.user_id, u.email, row_number() OVER (ORDER BY m.user_id) - 1 AS i,
           COUNT(*) OVER () AS n
    FROM accounts_membership m JOIN accounts_user u ON u.id = m.user_id
    WHERE m.organization_id = %(org)s AND m.role = 'learner'
), new_plans AS (
    INSERT INTO training_trainingplan (organization_id, name, start_date, status, created_by_id,
                                       created_at)
    SELECT %(org)s, 'Throughput ' || j, %(today)s, 'draft', %(admin)s, %(now)s
    FROM generate_series(1, %(count)s) j
    RETURNING id
), numbered AS (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS j FROM new_plans
), items AS (
    INSERT INTO training_planitem (plan_id, level_id, seats)
    SELECT id, %(level)s, %(people)s FROM numbered
    RETURNING id, plan_id
), people AS (
    INSERT INTO training_participant (plan_id, user_id, email, invite_token, created_at)
    SELECT n.id, l.user_id, l.email, gen_random_uuid(), %(now)s
    FROM numbered n CROSS JOIN generate_series(0, %(people)s - 1) k
    JOIN learners l ON l.i = mod(n.j * %(people)s + k, l.n)
    RETURNING id, plan_id
)
INSERT INTO training_itemassignment (item_id, participant_id, created_at)
SELECT items.id, people.id, %(now)s FROM people JOIN items USING (plan_id)
"""


def _drafts(organization: Organization, admin: User, count: int) -> list[TrainingPlan]:
    level = big_org.cheapest_level()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _DRAFTS_SQL,
            {
                "org": organization.pk,
                "admin": admin.pk,
                "count": count,
                "people": PEOPLE,
                "level": level,
                "today": timezone.localdate(),
                "now": timezone.now(),
            },
        )
    return list(
        TrainingPlan.objects.filter(
            organization=organization, name__startswith="Throughput ", status="draft"
        ).order_by("id")
    )


def _confirm_all(client, jobs: list[tuple[int, str]], start, failures: list[str]) -> None:
    try:
        start.wait()
        for pk, snapshot in jobs:
            response = client.post(
                reverse("training:confirm", args=[pk]),
                {"token": str(uuid.uuid4()), "snapshot": snapshot},
                headers=CONFIRM_TARGET,
            )
            if response.status_code != 200:
                failures.append(f"plan {pk}: {response.status_code}")
    finally:
        connection.close()


def _per_second(label: str) -> float:
    organization = big_org.organization(label)
    admin = big_org.admin_of(organization)
    big_org.top_up(organization)
    drafts = _drafts(organization, admin, THREADS * PER_THREAD)
    # The snapshot the page would carry: what the admin saw is what is confirmed.
    jobs = [(plan.pk, plans.plan_cost(plan=plan).snapshot) for plan in drafts]
    clients = [logged_in(admin) for _ in range(THREADS)]
    start = threading.Barrier(THREADS + 1)
    failures: list[str] = []
    threads = [
        threading.Thread(target=_confirm_all, args=(clients[n], jobs[n::THREADS], start, failures))
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    begun = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begun
    confirmed = TrainingPlan.objects.filter(
        pk__in=[pk for pk, _ in jobs], status=TrainingPlan.Status.CONFIRMED
    ).count()
    if failures or confirmed != len(jobs):
        raise SystemExit(
            f"confirm_throughput ({label}): {confirmed} of {len(jobs)} plans confirmed; "
            f"{failures[:5]}"
        )
    return len(jobs) / seconds


def run() -> None:
    small = _per_second("small")
    big = _per_second("big")
    report(
        bench="confirm_throughput",
        threads=THREADS,
        confirmations=THREADS * PER_THREAD,
        small_per_s=round(small, 1),
        big_per_s=round(big, 1),
        ratio=round(big / small, 2),
    )
