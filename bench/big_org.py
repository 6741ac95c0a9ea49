"""A three-year-old big organization beside a small one, for the benchmarks that compare them
(`pages_at_scale`, `confirm_throughput`, `redeem_hot_org_big`).

Built with set-based SQL (a few INSERT ... SELECT statements over generate_series) rather than
through the services, which would take hours for a million entries; every row is one the
services could have written, and `credits.audit.ledger_audit()` must pass on the result (the
build checks it and fails otherwise). What each organization gets, per lot of 12 credits
granted to its pool:

- every fifth lot is partly earmarked: 4 credits go to a course account (a transfer), 3 of them
  on to a manager of that course (a second transfer), who invites two learners: a hold of 2
  captured when the first accepts, and a hold of 1 that is still pending if the lot is less
  than two weeks old, otherwise released when the invitation expired;
- the pool's other credits but 2 are redeemed within a day of the grant, one credit per
  transaction (enrolments) except for the training plans, whose Confirm users is one
  redemption of the plan's whole cost across consecutive lots, as `credits_take` would take it;
- what is left when a lot's validity (365 days) ends leaves every account through an hourly
  `expire` transaction, as `lots_expire` writes it.

Lots are granted evenly over three years (the last two days ago), so about a third are still
valid. One liberty: each lot's credits are consumed shortly after its grant, while
`credits_take` would take older lots' leftovers first; no invariant rests on that order.

The result is cached as a template database named after VERSION (bump it whenever what the
build writes changes) and a digest of the migrations (`<bench db>_bigorg_v<VERSION>_<digest>`),
so that later runs copy it (`CREATE DATABASE ... TEMPLATE`) instead of building it again; a
template older than BENCH_BIGORG_MAX_AGE_DAYS (7) is rebuilt, so that "now" never drifts far
from the history. The benchmarks write to a copy, `<bench db>_bigorg`, made afresh from the
template on every run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import Organization, User

from . import support

VERSION = 1
BENCH_PASSWORD = "bench-password-not-secret"  # noqa: S105 (bench users only)
# A fixed salt with the entropy Django asks of one, so that logging in never rehashes.
_SALT = "BenchSaltBenchSalt0123"
STAFF_EMAIL = "bench-staff@bench.test"
MAX_AGE_DAYS = float(os.environ.get("BENCH_BIGORG_MAX_AGE_DAYS", "7"))

LOT_QUANTITY = 12
EARMARK_EVERY = 5  # every fifth lot is partly earmarked for a course
TO_COURSE = 4
TO_MANAGER = 3
CAPTURED = 2  # the manager's accepted invitation
PENDING = 1  # the manager's other invitation: pending, or released once expired
LEFT_IN_POOL = 2  # what the pool never spends of each lot: it expires, or is still live
HISTORY_DAYS = 1095
VALIDITY_DAYS = 365
INVITATION_DAYS = 14
CATALOG_COURSES = 40
LEVELS = [("Standard", 1), ("Advanced", 2), ("Expert", 3)]
CATEGORIES = ["Leadership", "Safety", "Compliance", "Data", "Sales", "Languages"]


@dataclass(frozen=True)
class OrgSize:
    label: str
    members: int
    admins: int
    managers: int
    lots: int
    plans: int
    courses: int  # courses of the catalog the organization earmarks and plans
    largest_plan: int
    typical_plan: int = 25
    plan_items: int = 2  # levels per plan at most (the largest plan has them all)

    @property
    def learners(self) -> int:
        return self.members - self.admins - self.managers


BIG = OrgSize(
    "big",
    members=5_000,
    admins=10,
    managers=100,
    lots=100_000,
    plans=200,
    courses=CATALOG_COURSES,
    largest_plan=1_000,
)
SMALL = OrgSize(
    "small",
    members=50,
    admins=2,
    managers=5,
    lots=100,
    plans=10,
    courses=5,
    largest_plan=40,
    plan_items=1,
)


def slug(size: OrgSize) -> str:
    return f"bench-{size.label}"


def organization(label: str) -> Organization:
    return Organization.objects.get(slug=f"bench-{label}")


def admin_of(org: Organization) -> User:
    return (
        User.objects.filter(memberships__organization=org, memberships__role="admin")
        .order_by("id")
        .first()
    )


def manager_of(org: Organization) -> User:
    return (
        User.objects.filter(memberships__organization=org, memberships__role="manager")
        .order_by("id")
        .first()
    )


# --- Pool positions --------------------------------------------------------------------------
# The pool's spendable credits of all lots, end to end, are numbered from 0: lot n (1-based)
# owns positions [start(n), start(n) + spent(n)). A redemption takes a run of positions.


def _spent(n: int) -> int:
    earmarked = n % EARMARK_EVERY == 0
    return LOT_QUANTITY - LEFT_IN_POOL - (TO_COURSE if earmarked else 0)


_BLOCK = sum(_spent(n) for n in range(1, EARMARK_EVERY + 1))


def _start(n: int) -> int:
    return (n - 1) * (LOT_QUANTITY - LEFT_IN_POOL) - TO_COURSE * ((n - 1) // EARMARK_EVERY)


def _lot_at(position: int) -> int:
    block, rest = divmod(position, _BLOCK)
    plain = LOT_QUANTITY - LEFT_IN_POOL
    return block * EARMARK_EVERY + min(rest // plain, EARMARK_EVERY - 1) + 1


# --- The build ---------------------------------------------------------------------------------


def _reserve(cursor, table: str, count: int) -> int:
    """The first of `count` consecutive ids taken from the table's sequence."""
    if count <= 0:
        return 0
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
        "nextval(pg_get_serial_sequence(%s, 'id')) + %s - 1)",
        [table, table, count],
    )
    return cursor.fetchone()[0] - count + 1


def _catalog(cursor) -> list[int]:
    """The shared catalog (courses are the platform's, not an organization's)."""
    first = _reserve(cursor, "catalog_course", CATALOG_COURSES)
    cursor.execute(
        """
        INSERT INTO catalog_course (id, title, slug, summary, category, duration_minutes,
                                    published)
        SELECT %(first)s + i - 1, 'Bench course ' || lpad(i::text, 2, '0'),
               'bench-course-' || i, 'A course of the benchmark catalog.',
               (%(categories)s::text[])[mod(i, %(n_categories)s) + 1], 60 + mod(i, 4) * 30, true
        FROM generate_series(1, %(courses)s) i
        """,
        {
            "first": first,
            "courses": CATALOG_COURSES,
            "categories": CATEGORIES,
            "n_categories": len(CATEGORIES),
        },
    )
    cursor.execute(
        """
        INSERT INTO catalog_level (course_id, name, "order", credit_cost)
        SELECT c.id, l.name, l.ord, l.cost
        FROM catalog_course c,
             unnest(%(names)s::text[], %(costs)s::int[]) WITH ORDINALITY AS l(name, cost, ord)
        WHERE c.id BETWEEN %(first)s AND %(last)s
        ORDER BY c.id, l.ord
        """,
        {
            "names": [name for name, _ in LEVELS],
            "costs": [cost for _, cost in LEVELS],
            "first": first,
            "last": first + CATALOG_COURSES - 1,
        },
    )
    return list(range(first, first + CATALOG_COURSES))


def _levels(cursor, course_ids: list[int]) -> dict[tuple[int, int], tuple[int, int]]:
    """(course id, level order) -> (level id, cost)."""
    cursor.execute(
        'SELECT course_id, "order", id, credit_cost FROM catalog_level WHERE course_id = ANY(%s)',
        [course_ids],
    )
    return {(c, o): (i, cost) for c, o, i, cost in cursor.fetchall()}


def _staff(cursor, password: str, now: dt.datetime) -> None:
    cursor.execute(
        """
        INSERT INTO accounts_user (password, is_superuser, first_name, last_name, is_staff,
                                   is_active, date_joined, email, time_zone)
        VALUES (%s, true, 'Bench', 'Support', true, true, %s, %s, '')
        ON CONFLICT DO NOTHING
        """,
        [password, now, STAFF_EMAIL],
    )


@dataclass
class _Plan:
    p: int
    plan_id: int
    name: str
    people: int
    status: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    items: list[tuple[int, int, int]]  # (item id, level id, cost)
    first_position: int = 0

    @property
    def total(self) -> int:
        return self.people * sum(cost for _, _, cost in self.items)


def _build_organization(
    cursor, size: OrgSize, course_ids: list[int], password: str, now: dt.datetime
) -> None:
    if size.learners < max(size.largest_plan, size.typical_plan):
        raise ValueError(f"{size.label}: fewer learners than the largest plan has people")
    if size.courses > len(course_ids) or size.managers < 1 or size.admins < 1:
        raise ValueError(f"{size.label}: needs an admin, a manager and courses of the catalog")
    t0 = now - dt.timedelta(days=HISTORY_DAYS)
    last_invoice = now - dt.timedelta(days=2)
    step = (last_invoice - t0) / max(size.lots - 1, 1)
    org_courses = course_ids[: size.courses]
    levels = _levels(cursor, org_courses)

    def invoiced(n: int) -> dt.datetime:
        return t0 + step * (n - 1)

    cursor.execute(
        """
        INSERT INTO accounts_organization (name, slug, time_zone, currency, redemption_point,
            when_short, lot_validity_days, low_balance_threshold, created_at)
        VALUES (%s, %s, 'Europe/Paris', 'USD', 'confirm', 'buy', %s, 100, %s) RETURNING id
        """,
        [f"Bench {size.label} organization", slug(size), VALIDITY_DAYS, t0 - dt.timedelta(days=1)],
    )
    (org,) = cursor.fetchone()

    # People: admins, then managers, then learners, with consecutive ids.
    user0 = _reserve(cursor, "accounts_user", size.members)
    learner0 = user0 + size.admins + size.managers
    people = {
        "org": org,
        "user0": user0,
        "members": size.members,
        "admins": size.admins,
        "managers": size.managers,
        "label": size.label,
        "password": password,
        "joined": t0,
    }
    cursor.execute(
        """
        INSERT INTO accounts_user (id, password, is_superuser, first_name, last_name, is_staff,
                                   is_active, date_joined, email, time_zone)
        SELECT %(user0)s + i - 1, %(password)s, false, '', '', false, true,
               %(joined)s + i * interval '1 minute',
               %(label)s || '-' || lpad(i::text, 5, '0') || '@bench.test', ''
        FROM generate_series(1, %(members)s) i
        """,
        people,
    )
    cursor.execute(
        """
        INSERT INTO accounts_membership (user_id, organization_id, role, created_at)
        SELECT %(user0)s + i - 1, %(org)s,
               CASE WHEN i <= %(admins)s THEN 'admin'
                    WHEN i <= %(admins)s + %(managers)s THEN 'manager' ELSE 'learner' END,
               %(joined)s + i * interval '1 minute'
        FROM generate_series(1, %(members)s) i
        """,
        people,
    )
    # Manager g (1-based) manages one course; accounts: the pool, one per course, one per
    # manager, with ids pool, pool + course index, pool + courses + g.
    account0 = _reserve(cursor, "credits_account", 1 + size.courses + size.managers)
    ids = {
        "org": org,
        "account0": account0,
        "courses": size.courses,
        "course_ids": org_courses,
        "managers": size.managers,
        "manager0": user0 + size.admins,
        "joined": t0,
    }
    cursor.execute(
        """
        INSERT INTO training_coursemanager (organization_id, course_id, user_id, created_at)
        SELECT %(org)s, (%(course_ids)s::bigint[])[mod(g - 1, %(courses)s) + 1],
               %(manager0)s + g - 1, %(joined)s
        FROM generate_series(1, %(managers)s) g
        """,
        ids,
    )
    cursor.execute(
        """
        INSERT INTO credits_account (id, organization_id, kind, course_id, manager_id, balance,
                                     held)
        SELECT %(account0)s, %(org)s, 'pool', NULL::bigint, NULL::bigint, 0, 0
        UNION ALL
        SELECT %(account0)s + c, %(org)s, 'course', (%(course_ids)s::bigint[])[c], NULL, 0, 0
        FROM generate_series(1, %(courses)s) c
        UNION ALL
        SELECT %(account0)s + %(courses)s + g, %(org)s, 'manager',
               (%(course_ids)s::bigint[])[mod(g - 1, %(courses)s) + 1], %(manager0)s + g - 1, 0, 0
        FROM generate_series(1, %(managers)s) g
        """,
        ids,
    )

    # Lots, and each lot's place in the pool's positions.
    lot0 = _reserve(cursor, "credits_lot", size.lots)
    earmarked = size.lots // EARMARK_EVERY
    hold0 = _reserve(cursor, "credits_hold", 2 * earmarked)
    shape = {
        "org": org,
        "lot0": lot0,
        "lots": size.lots,
        "t0": t0,
        "step": step,
        "validity": dt.timedelta(days=VALIDITY_DAYS),
        "now": now,
        "q": LOT_QUANTITY,
        "every": EARMARK_EVERY,
        "to_course": TO_COURSE,
        "to_manager": TO_MANAGER,
        "captured": CAPTURED,
        "pending": PENDING,
        "plain": LOT_QUANTITY - LEFT_IN_POOL,
        "invitation": dt.timedelta(days=INVITATION_DAYS),
        "account0": account0,
        "courses": size.courses,
        "managers": size.managers,
        "manager0": user0 + size.admins,
        "learner0": learner0,
        "learners": size.learners,
        "course_ids": org_courses,
        "label": size.label,
        "hold0": hold0,
        "admin": user0,
    }
    cursor.execute(
        """
        CREATE TEMP TABLE bench_lot ON COMMIT DROP AS
        SELECT n, %(lot0)s + n - 1 AS lot_id, invoiced, invoiced + %(validity)s AS expires,
               CASE WHEN invoiced + %(validity)s <= %(now)s THEN
                   LEAST(date_trunc('hour', invoiced + %(validity)s) + interval '1 hour',
                         %(now)s) END AS expired,
               mod(n, %(every)s) = 0 AS earmarked,
               (n - 1) * %(plain)s - %(to_course)s * ((n - 1) / %(every)s) AS first_position,
               %(plain)s - CASE WHEN mod(n, %(every)s) = 0 THEN %(to_course)s ELSE 0 END
                   AS spent,
               n / %(every)s AS k,  -- the earmark's number, for earmarked lots
               mod(n / %(every)s - 1, %(managers)s) + 1 AS g  -- its manager
        FROM (SELECT n, %(t0)s + (n - 1) * %(step)s AS invoiced
              FROM generate_series(1, %(lots)s) n) s
        """,
        shape,
    )
    cursor.execute("CREATE INDEX ON bench_lot (n)")
    cursor.execute("ANALYZE bench_lot")
    cursor.execute(
        """
        INSERT INTO credits_lot (id, organization_id, source, quantity, invoiced_at, expires_at,
                                 reference, expired_at, revoked_at, created_at)
        SELECT lot_id, %(org)s, CASE WHEN mod(n, 10) = 0 THEN 'purchase' ELSE 'subscription' END,
               %(q)s, invoiced, expires, 'in_bench_' || %(org)s || '_' || n, expired, NULL,
               invoiced
        FROM bench_lot ORDER BY n
        """,
        shape,
    )

    plans = _plans(cursor, size, org, user0, levels, org_courses, now, invoiced)

    # The ledger's transactions (bench_txn) and entries (bench_entry), tied by a key of the
    # build's own (tkey: kind * 10^12 + a number), then given ids in time order.
    cursor.execute(
        """
        CREATE TEMP TABLE bench_txn (
            tkey bigint, kind text, account_id bigint, quantity int, reference text,
            memo text, actor_id bigint, created_at timestamptz, idempotency_key text
        ) ON COMMIT DROP;
        CREATE TEMP TABLE bench_entry (
            tkey bigint, account_id bigint, lot_id bigint, quantity int, created_at timestamptz
        ) ON COMMIT DROP;
        """
    )
    # Grants, into the pool.
    cursor.execute(
        """
        INSERT INTO bench_txn
        SELECT 1e12::bigint + n, 'grant', %(account0)s, %(q)s,
               'in_bench_' || %(org)s || '_' || n, '', NULL, invoiced,
               CASE WHEN mod(n, 10) = 0 THEN 'stripe:checkout:cs_bench_' ELSE 'subscription:' END
                   || %(org)s || '_' || n
        FROM bench_lot;
        INSERT INTO bench_entry SELECT 1e12::bigint + n, %(account0)s, lot_id, %(q)s, invoiced
        FROM bench_lot;
        """,
        shape,
    )
    # Earmarks: pool -> course, course -> manager; the manager's two invitations.
    cursor.execute(
        """
        CREATE TEMP TABLE bench_earmark ON COMMIT DROP AS
        SELECT l.*, %(account0)s + mod(g - 1, %(courses)s) + 1 AS course_account,
               %(account0)s + %(courses)s + g AS manager_account,
               %(manager0)s + g - 1 AS manager_user,
               (%(course_ids)s::bigint[])[mod(g - 1, %(courses)s) + 1] AS course_id,
               'Bench course ' || lpad(((mod(g - 1, %(courses)s)) + 1)::text, 2, '0')
                   AS course_title,
               %(manager0)s + g - 1 AS manager_index,
               %(learner0)s + mod(2 * k, %(learners)s) AS accepted_user,
               %(learner0)s + mod(2 * k + 1, %(learners)s) AS invited_user,
               %(hold0)s + 2 * (k - 1) AS captured_hold,
               %(hold0)s + 2 * (k - 1) + 1 AS pending_hold,
               invoiced + %(invitation)s > %(now)s AS still_pending
        FROM bench_lot l WHERE earmarked;
        """,
        shape,
    )
    cursor.execute(
        """
        INSERT INTO bench_txn
        SELECT 2e12::bigint + n, 'transfer', %(account0)s, %(to_course)s,
               'Universal pool → Course: ' || course_title, '', %(admin)s,
               invoiced + interval '1 hour', 'ui:' || md5('c' || %(org)s || '_' || n)::uuid
        FROM bench_earmark
        UNION ALL
        SELECT 3e12::bigint + n, 'transfer', course_account, %(to_manager)s,
               'Course: ' || course_title || ' → Manager ' || %(label)s || '-'
                   || lpad((manager_index - %(admin)s + 1)::text, 5, '0') || '@bench.test on '
                   || course_title,
               '', %(admin)s, invoiced + interval '2 hours',
               'ui:' || md5('m' || %(org)s || '_' || n)::uuid
        FROM bench_earmark
        UNION ALL
        SELECT 4e12::bigint + n, 'hold', manager_account, %(captured)s,
               course_title || ' — Standard: invitation', '', manager_user,
               invoiced + interval '3 hours', 'invite:' || md5('a' || %(org)s || '_' || n)::uuid
        FROM bench_earmark
        UNION ALL
        SELECT 5e12::bigint + n, 'capture', manager_account, %(captured)s,
               course_title || ' — Standard: invitation', '', accepted_user,
               invoiced + interval '1 day', 'hold:' || captured_hold || ':capture'
        FROM bench_earmark
        UNION ALL
        SELECT 6e12::bigint + n, 'hold', manager_account, %(pending)s,
               course_title || ' — Standard: invitation', '', manager_user,
               invoiced + interval '4 hours', 'invite:' || md5('b' || %(org)s || '_' || n)::uuid
        FROM bench_earmark
        UNION ALL
        SELECT 7e12::bigint + n, 'release', manager_account, %(pending)s,
               course_title || ' — Standard: invitation', '', NULL,
               invoiced + interval '4 hours' + %(invitation)s,
               'hold:' || pending_hold || ':release'
        FROM bench_earmark WHERE NOT still_pending;

        INSERT INTO bench_entry
        SELECT 2e12::bigint + n, %(account0)s, lot_id, -%(to_course)s, invoiced + interval '1 hour'
        FROM bench_earmark
        UNION ALL
        SELECT 2e12::bigint + n, course_account, lot_id, %(to_course)s, invoiced + interval '1 hour'
        FROM bench_earmark
        UNION ALL
        SELECT 3e12::bigint + n, course_account, lot_id, -%(to_manager)s,
               invoiced + interval '2 hours'
        FROM bench_earmark
        UNION ALL
        SELECT 3e12::bigint + n, manager_account, lot_id, %(to_manager)s,
               invoiced + interval '2 hours'
        FROM bench_earmark
        UNION ALL
        SELECT 5e12::bigint + n, manager_account, lot_id, -%(captured)s, invoiced + interval '1 day'
        FROM bench_earmark;
        """,
        shape,
    )

    # Training plans' Confirm users: one redemption each, over consecutive positions.
    confirmed = [plan for plan in plans if plan.confirmed_at is not None]
    cursor.execute(
        """
        CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
        SELECT * FROM unnest(%(p)s::int[], %(plan)s::bigint[], %(first)s::bigint[],
                             %(total)s::int[], %(at)s::timestamptz[], %(ref)s::text[],
                             %(key)s::text[])
            AS t(p, plan_id, first_position, total, at, reference, idempotency_key);
        INSERT INTO bench_txn
        SELECT 8e12::bigint + p, 'redeem', %(pool)s, total, reference, '', %(admin)s, at,
               idempotency_key
        FROM bench_plan;
        INSERT INTO bench_entry
        SELECT 8e12::bigint + bp.p, %(pool)s, l.lot_id,
               -(LEAST(bp.first_position + bp.total, l.first_position + l.spent)
                 - GREATEST(bp.first_position, l.first_position)), bp.at
        FROM bench_plan bp JOIN bench_lot l
          ON l.first_position < bp.first_position + bp.total
         AND bp.first_position < l.first_position + l.spent;
        """,
        {
            "p": [plan.p for plan in confirmed],
            "plan": [plan.plan_id for plan in confirmed],
            "first": [plan.first_position for plan in confirmed],
            "total": [plan.total for plan in confirmed],
            "at": [plan.confirmed_at for plan in confirmed],
            "ref": [f"Training plan: {plan.name} ({plan.people} people)" for plan in confirmed],
            "key": [f"plan:{plan.plan_id}:confirm:bench-{plan.p}" for plan in confirmed],
            "pool": account0,
            "admin": user0,
        },
    )
    # Every other spent position: one enrolment of one credit, within a day of the grant.
    cursor.execute(
        """
        CREATE TEMP TABLE bench_taken ON COMMIT DROP AS
        SELECT generate_series(first_position, first_position + total - 1) AS position
        FROM bench_plan;
        CREATE TEMP TABLE bench_single ON COMMIT DROP AS
        SELECT s.position, l.lot_id,
               l.invoiced + interval '5 hours'
                   + interval '1 day' * ((s.position - l.first_position) + 0.5) / l.spent AS at
        FROM bench_lot l,
             LATERAL generate_series(l.first_position, l.first_position + l.spent - 1)
                 AS s(position)
        WHERE NOT EXISTS (SELECT FROM bench_taken t WHERE t.position = s.position);
        INSERT INTO bench_txn
        SELECT 9e12::bigint + position, 'redeem', %(account0)s, 1,
               'Enrollment: ' || %(label)s || '-'
                   || lpad((%(admins)s + %(managers)s + 1 + mod(position, %(learners)s))::text,
                           5, '0')
                   || '@bench.test in Bench course '
                   || lpad((mod(position, %(courses)s) + 1)::text, 2, '0') || ' — Standard',
               '', %(admin)s, at, 'enroll:' || md5('e' || %(org)s || '_' || position)::uuid
        FROM bench_single;
        INSERT INTO bench_entry SELECT 9e12::bigint + position, %(account0)s, lot_id, -1, at
        FROM bench_single;
        """,
        {**shape, "admins": size.admins},
    )
    # Expiry: what is left of each lot, in every account, leaves in the hourly run after its
    # validity ended (one transaction per organization and run, as lots_expire writes them).
    cursor.execute(
        """
        CREATE TEMP TABLE bench_left ON COMMIT DROP AS
        SELECT s.*, 10e12::bigint + dense_rank() OVER (ORDER BY expired) AS tkey
        FROM (SELECT e.account_id, e.lot_id, SUM(e.quantity) AS quantity, l.expired
              FROM bench_entry e JOIN bench_lot l ON l.lot_id = e.lot_id
              WHERE l.expired IS NOT NULL
              GROUP BY e.account_id, e.lot_id, l.expired HAVING SUM(e.quantity) > 0) s;
        INSERT INTO bench_txn
        SELECT tkey, 'expire', NULL, SUM(quantity), '',
               'Validity ended: what was left of each lot expired.', NULL, expired,
               'expire:' || md5('x' || %(org)s || '_' || tkey)::uuid
        FROM bench_left GROUP BY tkey, expired;
        INSERT INTO bench_entry SELECT tkey, account_id, lot_id, -quantity, expired
        FROM bench_left;
        """,
        shape,
    )

    count = _count(cursor, "bench_txn")
    txn0 = _reserve(cursor, "credits_ledgertransaction", count)
    cursor.execute(
        """
        CREATE TEMP TABLE bench_txn_id ON COMMIT DROP AS
        SELECT tkey, %(txn0)s + row_number() OVER (ORDER BY created_at, tkey) - 1 AS id
        FROM bench_txn;
        CREATE UNIQUE INDEX ON bench_txn_id (tkey);
        ANALYZE bench_txn_id;
        INSERT INTO credits_ledgertransaction
            (id, organization_id, kind, idempotency_key, fingerprint, account_id, quantity,
             reference, memo, actor_id, created_at, reversal_of_id)
        SELECT i.id, %(org)s, t.kind, t.idempotency_key,
               CASE WHEN t.kind = 'expire' THEN ''
                    ELSE md5(t.idempotency_key) || md5(t.idempotency_key || '.') END,
               t.account_id, t.quantity, t.reference, t.memo, t.actor_id, t.created_at, NULL
        FROM bench_txn t JOIN bench_txn_id i USING (tkey)
        ORDER BY i.id;
        INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
        SELECT i.id, e.account_id, e.lot_id, e.quantity, e.created_at
        FROM bench_entry e JOIN bench_txn_id i USING (tkey)
        ORDER BY e.created_at, i.id, e.account_id;
        INSERT INTO credits_holding (account_id, lot_id, quantity)
        SELECT account_id, lot_id, SUM(quantity) FROM bench_entry
        GROUP BY account_id, lot_id ORDER BY lot_id, account_id;
        """,
        {"txn0": txn0, "org": org},
    )
    # The confirmed plans' enrolments, each pointing at its plan's redemption.
    cursor.execute(
        """
        INSERT INTO training_enrollment (participant_id, level_id, cost, status, progress,
            redemption_id, hold_id, started_at, completed_at, created_at)
        SELECT bp.participant_id, it.level_id, lv.credit_cost,
               CASE WHEN bp.status = 'completed' OR mod(bp.i, 3) = 2 THEN 'completed'
                    WHEN mod(bp.i, 3) = 1 THEN 'started' ELSE 'assigned' END,
               CASE WHEN bp.status = 'completed' OR mod(bp.i, 3) = 2 THEN 100
                    WHEN mod(bp.i, 3) = 1 THEN 40 ELSE 0 END,
               t.id,
               NULL,
               CASE WHEN bp.status = 'completed' OR mod(bp.i, 3) > 0
                    THEN bp.confirmed + interval '2 days' END,
               CASE WHEN bp.status = 'completed' OR mod(bp.i, 3) = 2
                    THEN bp.confirmed + interval '20 days' END,
               bp.confirmed
        FROM bench_person bp
        JOIN training_planitem it ON it.plan_id = bp.plan_id
        JOIN catalog_level lv ON lv.id = it.level_id
        JOIN bench_txn_id t ON t.tkey = 8e12::bigint + bp.p
        WHERE bp.confirmed IS NOT NULL
        ORDER BY bp.participant_id, it.id;
        """
    )
    # Holds and the manager invitations that placed them.
    cursor.execute(
        """
        INSERT INTO credits_hold (id, account_id, quantity, status, reference, allow_overage,
                                  placed_by_id, resolved_by_id, created_at)
        SELECT e.captured_hold, e.manager_account, %(captured)s, 'captured', t.reference, false,
               placed.id, resolved.id, t.created_at
        FROM bench_earmark e
        JOIN bench_txn t ON t.tkey = 4e12::bigint + e.n
        JOIN bench_txn_id placed ON placed.tkey = 4e12::bigint + e.n
        JOIN bench_txn_id resolved ON resolved.tkey = 5e12::bigint + e.n
        UNION ALL
        SELECT e.pending_hold, e.manager_account, %(pending)s,
               CASE WHEN e.still_pending THEN 'active' ELSE 'released' END, t.reference, false,
               placed.id, resolved.id, t.created_at
        FROM bench_earmark e
        JOIN bench_txn t ON t.tkey = 6e12::bigint + e.n
        JOIN bench_txn_id placed ON placed.tkey = 6e12::bigint + e.n
        LEFT JOIN bench_txn_id resolved ON resolved.tkey = 7e12::bigint + e.n
        ORDER BY 1;
        INSERT INTO training_assignment (organization_id, level_id, course_id, email, user_id,
            manager_id, token, replaced_tokens, status, progress, hold_id, redemption_id,
            expires_at, accepted_at, created_at)
        SELECT %(org)s, lv.id, e.course_id,
               %(label)s || '-' || lpad((e.accepted_user - %(admin)s + 1)::text, 5, '0')
                   || '@bench.test',
               e.accepted_user, e.manager_user, gen_random_uuid(), '{}'::uuid[],
               CASE WHEN mod(e.k, 2) = 0 THEN 'started' ELSE 'accepted' END,
               CASE WHEN mod(e.k, 2) = 0 THEN 30 ELSE 0 END, e.captured_hold, NULL::bigint,
               e.invoiced + interval '3 hours' + %(invitation)s, e.invoiced + interval '1 day',
               e.invoiced + interval '3 hours'
        FROM bench_earmark e JOIN catalog_level lv ON lv.course_id = e.course_id AND lv."order" = 1
        UNION ALL
        SELECT %(org)s, lv.id, e.course_id,
               %(label)s || '-' || lpad((e.invited_user - %(admin)s + 1)::text, 5, '0')
                   || '@bench.test',
               NULL, e.manager_user, gen_random_uuid(), '{}'::uuid[],
               CASE WHEN e.still_pending THEN 'invited' ELSE 'expired' END, 0, e.pending_hold,
               NULL, e.invoiced + interval '4 hours' + %(invitation)s, NULL,
               e.invoiced + interval '4 hours'
        FROM bench_earmark e JOIN catalog_level lv ON lv.course_id = e.course_id AND lv."order" = 1
        ORDER BY 15;
        """,
        shape,
    )
    # The cached figures, from what was just written.
    cursor.execute(
        """
        UPDATE credits_account a
        SET balance = COALESCE((SELECT SUM(quantity) FROM credits_holding h
                                WHERE h.account_id = a.id), 0),
            held = COALESCE((SELECT SUM(quantity) FROM credits_hold h
                             WHERE h.account_id = a.id AND h.status = 'active'), 0)
        WHERE a.organization_id = %s
        """,
        [org],
    )
    # An admin's cart with a few lines, for the cart page.
    cursor.execute(
        """
        INSERT INTO catalog_cartline (organization_id, user_id, level_id, seats)
        SELECT %(org)s, %(admin)s, lv.id, 5
        FROM catalog_level lv WHERE lv.course_id = ANY(%(courses)s) AND lv."order" = 1
        """,
        {"org": org, "admin": user0, "courses": org_courses[:3]},
    )
    for table in ["bench_lot", "bench_txn", "bench_entry", "bench_txn_id", "bench_earmark"]:
        cursor.execute(f"DROP TABLE {table}")
    for table in ["bench_plan", "bench_taken", "bench_single", "bench_left", "bench_person"]:
        cursor.execute(f"DROP TABLE {table}")


def _overlaps(plans: list[_Plan], plan: _Plan) -> bool:
    return any(
        other.confirmed_at is not None
        and other.first_position < plan.first_position + plan.total
        and plan.first_position < other.first_position + other.total
        for other in plans
    )


def _count(cursor, table: str) -> int:
    cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 (a name of this file)
    return cursor.fetchone()[0]


def _plans(cursor, size, org, admin, levels, org_courses, now, invoiced) -> list[_Plan]:
    """Training plans with their items, participants, seats and enrolments, as Confirm users
    leaves them; returns them with where each confirmed plan's redemption starts.

    Plan 1 is the largest, plan 2 a typical one (the same in both organizations: the page to
    compare); both are the latest confirmed. Others: some drafts (recent, nothing charged),
    some cancelled, the older confirmed ones completed."""
    plans: list[_Plan] = []
    first_plan = _reserve(cursor, "training_trainingplan", size.plans)
    slots = size.lots / (size.plans + 1)
    total_positions = _start(size.lots + 1)
    for p in range(1, size.plans + 1):
        if p == 1:
            people = size.largest_plan
        elif p == 2:
            people = size.typical_plan
        else:
            people = 5 + (p * 37) % (min(size.learners, 70) - 4)
        items_count = size.plan_items if p == 1 else (1 if p % 2 or size.plan_items == 1 else 2)
        course_a = org_courses[p % len(org_courses)]
        course_b = org_courses[(p + 1) % len(org_courses)]
        chosen = [levels[(course_a, 1)], levels[(course_b, 2)]][:items_count]
        # Plan 1 the newest slot, plan 2 the one before, and so on back in time.
        lot = max(1, int(slots * (size.plans + 1 - p)))
        draft = p > 2 and p % 10 == 3
        cancelled = p > 2 and p % 25 == 0
        plan = _Plan(
            p=p,
            plan_id=first_plan + p - 1,
            name=f"Bench plan {p:03d}",
            people=people,
            status="confirmed",
            created_at=invoiced(lot) - dt.timedelta(days=2),
            confirmed_at=None,
            items=[(0, level_id, cost) for level_id, cost in chosen],
            first_position=_start(lot),
        )
        if draft:
            plan.status = "draft"
            plan.created_at = now - dt.timedelta(days=1 + p % 20)
        elif cancelled:
            plan.status = "cancelled"
        else:
            end = plan.first_position + plan.total
            if end > total_positions or (plans and _overlaps(plans, plan)):
                raise ValueError(f"{size.label}: plan {p} does not fit in the pool's history")
            plan.confirmed_at = invoiced(_lot_at(end - 1)) + dt.timedelta(hours=5)
            if p > 2 and plan.confirmed_at < now - dt.timedelta(days=120):
                plan.status = "completed"
        plans.append(plan)

    item_count = sum(len(plan.items) for plan in plans)
    item0 = _reserve(cursor, "training_planitem", item_count)
    next_item = item0
    for plan in plans:
        with_ids = []
        for _, level_id, cost in plan.items:
            with_ids.append((next_item, level_id, cost))
            next_item += 1
        plan.items = with_ids

    cursor.execute(
        """
        INSERT INTO training_trainingplan (id, organization_id, name, start_date, status,
                                           created_by_id, created_at)
        SELECT id, %(org)s, name, (created + interval '7 days')::date, status, %(admin)s, created
        FROM unnest(%(ids)s::bigint[], %(names)s::text[], %(status)s::text[],
                    %(created)s::timestamptz[]) AS t(id, name, status, created)
        """,
        {
            "org": org,
            "admin": admin,
            "ids": [plan.plan_id for plan in plans],
            "names": [plan.name for plan in plans],
            "status": [plan.status for plan in plans],
            "created": [plan.created_at for plan in plans],
        },
    )
    rows = [(plan, item) for plan in plans for item in plan.items]
    cursor.execute(
        """
        INSERT INTO training_planitem (id, plan_id, level_id, seats)
        SELECT * FROM unnest(%(ids)s::bigint[], %(plans)s::bigint[], %(levels)s::bigint[],
                             %(seats)s::int[])
        """,
        {
            "ids": [item[0] for _, item in rows],
            "plans": [plan.plan_id for plan, _ in rows],
            "levels": [item[1] for _, item in rows],
            "seats": [plan.people for plan, _ in rows],
        },
    )
    participant0 = _reserve(cursor, "training_participant", sum(plan.people for plan in plans))
    starts, offset = [], participant0
    for plan in plans:
        starts.append(offset)
        offset += plan.people
    learner0 = admin + size.admins + size.managers
    cursor.execute(
        """
        CREATE TEMP TABLE bench_person ON COMMIT DROP AS
        SELECT t.plan_id, t.p, t.status, t.created, t.confirmed, t.first + i AS participant_id,
               %(learner0)s + mod(t.p * 97 + i, %(learners)s) AS user_id, i
        FROM unnest(%(plans)s::bigint[], %(ps)s::int[], %(status)s::text[],
                    %(created)s::timestamptz[], %(confirmed)s::timestamptz[],
                    %(first)s::bigint[], %(people)s::int[])
             AS t(plan_id, p, status, created, confirmed, first, people),
             LATERAL generate_series(0, t.people - 1) i;
        INSERT INTO training_participant (id, plan_id, user_id, email, invite_token,
                                          confirmed_at, removed_at, created_at)
        SELECT participant_id, plan_id, user_id,
               %(label)s || '-' || lpad((user_id - %(admin)s + 1)::text, 5, '0') || '@bench.test',
               gen_random_uuid(), confirmed, NULL, created + interval '1 hour'
        FROM bench_person ORDER BY participant_id;
        INSERT INTO training_itemassignment (item_id, participant_id, confirmed_at, created_at)
        SELECT it.id, bp.participant_id, bp.confirmed, bp.created + interval '1 hour'
        FROM bench_person bp JOIN training_planitem it ON it.plan_id = bp.plan_id
        ORDER BY it.id, bp.participant_id;
        """,
        {
            "learner0": learner0,
            "learners": size.learners,
            "plans": [plan.plan_id for plan in plans],
            "ps": [plan.p for plan in plans],
            "status": [plan.status for plan in plans],
            "created": [plan.created_at for plan in plans],
            "confirmed": [plan.confirmed_at for plan in plans],
            "first": starts,
            "people": [plan.people for plan in plans],
            "label": size.label,
            "admin": admin,
        },
    )
    return plans


def build(
    *,
    sizes: tuple[OrgSize, ...] = (SMALL, BIG),
    now: dt.datetime | None = None,
    analyse: bool = True,
) -> dict:
    """Write the organizations into the current database (migrated, without them yet) in one
    transaction, analyse the tables (`analyse`: VACUUM cannot run inside a transaction, as in
    a test), and prove the ledger with the audit. Returns counts."""
    from credits.audit import ledger_audit

    now = now or timezone.now()
    password = make_password(BENCH_PASSWORD, salt=_SALT, hasher="md5")
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        # Big sorts and hashes; only this session's.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        # The build is one transaction that is either whole or dropped with its database.
        cursor.execute("SET LOCAL synchronous_commit = off")
        _staff(cursor, password, now)
        course_ids = _catalog(cursor)
        for size in sizes:
            _build_organization(cursor, size, course_ids, password, now)
    with connection.cursor() as cursor:
        if analyse:
            # Fresh statistics and visibility maps, as a database that grew over three years
            # would have.
            cursor.execute("VACUUM ANALYZE")
        cursor.execute(
            "SELECT o.slug, COUNT(e.id) FROM accounts_organization o "
            "JOIN credits_account a ON a.organization_id = o.id "
            "JOIN credits_ledgerentry e ON e.account_id = a.id "
            "WHERE o.slug = ANY(%s) GROUP BY o.slug",
            [[slug(size) for size in sizes]],
        )
        entries = dict(cursor.fetchall())
        cursor.execute(
            "SELECT o.slug, COUNT(l.id) FROM accounts_organization o "
            "JOIN credits_lot l ON l.organization_id = o.id WHERE o.slug = ANY(%s) GROUP BY o.slug",
            [[slug(size) for size in sizes]],
        )
        lots = dict(cursor.fetchall())
    built = time.monotonic() - started
    report = ledger_audit()
    if not report.ok:
        raise RuntimeError(
            "the big-organization build breaks the ledger: " + "; ".join(report.violations[:10])
        )
    return {
        "entries": entries,
        "lots": lots,
        "build_seconds": round(built, 1),
        "audit_seconds": round(time.monotonic() - started - built, 1),
    }


# --- The cached template -------------------------------------------------------------------------


def _digest() -> str:
    """The schema the template's rows were written for: every migration of the project, and
    Django's version (its own apps' migrations). A change to what the build writes bumps
    VERSION instead."""
    import django

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(django.get_version().encode())
    # The SQL files migrations install (credits/sql/) are part of the schema too.
    for path in sorted([*root.glob("*/migrations/*.py"), *root.glob("*/sql/*.sql")]):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def template_name() -> str:
    return f"{support.bench_database_name()}_bigorg_v{VERSION}_{_digest()}"


def working_name() -> str:
    return f"{support.bench_database_name()}_bigorg"


def _admin_connection():
    return psycopg.connect(**support.database_params("postgres"), autocommit=True)


def _template_age_days(conn, name: str) -> float | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        [name],
    ).fetchone()
    if row is None:
        return None
    try:
        built = dt.datetime.fromisoformat((row[0] or "").removeprefix("built "))
    except ValueError:
        return float("inf")
    return (timezone.now() - built).total_seconds() / 86400


def ensure_template(*, log=print) -> str:
    """The template database, built unless a fresh enough one with this name exists."""
    name = template_name()
    base = support.bench_database_name()
    with _admin_connection() as conn:
        age = _template_age_days(conn, name)
        if age is not None and age <= MAX_AGE_DAYS:
            return name
        # Older versions and half-built ones: gigabytes nobody will use again.
        stale = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
            [f"{base}_bigorg_v%", name if age is None else ""],
        ).fetchall()
        for (old,) in stale:
            support.drop_database(conn, old)
        building = f"{base}_bigorg_building"
        support.drop_database(conn, building)
        conn.execute(f'CREATE DATABASE "{building}"')
    log(f"big_org: building {name} (cold; takes a few minutes)")
    started = time.monotonic()
    with support.using_database(building):
        call_command("migrate", verbosity=0, interactive=False)
        figures = build()
    with _admin_connection() as conn:
        conn.execute(f"COMMENT ON DATABASE \"{building}\" IS 'built {timezone.now().isoformat()}'")
        conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    log(f"big_org: built in {time.monotonic() - started:.0f} s: {figures}")
    return name


_working_ready = False


def use_big_org_database() -> None:
    """Point Django at a fresh copy of the template (made once per process)."""
    global _working_ready
    if not _working_ready:
        prepare()
    support.switch_database(working_name())


def prepare() -> dict:
    """Build the template if needed, then copy it to the working database; say how long
    each step took."""
    global _working_ready
    started = time.monotonic()
    existed = _exists(template_name())
    template = ensure_template(log=lambda line: print(line, file=sys.stderr, flush=True))
    built = time.monotonic() - started
    connections.close_all()
    with _admin_connection() as conn:
        support.drop_database(conn, working_name())
        # FILE_COPY: one checkpoint and a copy of the files, instead of WAL-logging every
        # block of a database of a few gigabytes.
        conn.execute(f'CREATE DATABASE "{working_name()}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    _working_ready = True
    return {
        "template": template,
        "cached": existed,
        "build_s": round(built, 1),
        "copy_s": round(time.monotonic() - started - built, 1),
    }


def _exists(name: str) -> bool:
    with _admin_connection() as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


def run() -> None:
    """`python -m bench big_org`: the fixture alone, with how long it took."""
    figures = prepare()
    support.switch_database(working_name())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT o.slug, (SELECT COUNT(*) FROM credits_lot l WHERE l.organization_id = o.id), "
            "(SELECT COUNT(*) FROM credits_ledgertransaction t WHERE t.organization_id = o.id), "
            "(SELECT COUNT(*) FROM accounts_membership m WHERE m.organization_id = o.id) "
            "FROM accounts_organization o WHERE o.slug LIKE 'bench-%%' ORDER BY o.id"
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT pg_database_size(current_database())")
        (size,) = cursor.fetchone()
    support.report(
        bench="big_org",
        **figures,
        database_mb=round(size / 2**20),
        organizations={
            slug_: {"lots": lots, "transactions": txns, "members": members}
            for slug_, lots, txns, members in rows
        },
    )


def top_up(org: Organization, quantity: int = 1_000_000) -> None:
    """A lot big enough for a benchmark that spends from the pool, granted the same way in
    either organization (once: the key is fixed)."""
    from credits import services
    from credits.models import LedgerTransaction

    if LedgerTransaction.objects.filter(organization=org, idempotency_key="bench-top-up").exists():
        return
    services.lot_grant(
        organization=org,
        quantity=quantity,
        source="grant",
        invoice_date=timezone.now(),
        reference="",
        idempotency_key="bench-top-up",
    )


def cheapest_level() -> int:
    """The one-credit level of the first bench course, which every organization plans."""
    from catalog.models import Level

    return Level.objects.filter(course__slug="bench-course-1", credit_cost=1).values_list(
        "pk", flat=True
    )[0]
