"""Every admin and manager page, and the Django admin's ledger lists, in the small and the big
organization of bench/big_org.py: p50 and p95 in milliseconds, and the HTML size in kB.

Requests go through Django's test client, in this process, on the bench database: the whole
request (middleware, view, queries, template) as a server runs it, without a socket or a
server's own overhead in between, which would add the same to either organization. Each page
is requested WARMUPS times, then SAMPLES times; a page slower than BENCH_PAGE_SECONDS per
organization stops after MIN_SAMPLES measured requests (`n` says how many there were), and
one whose first request alone exceeds that budget is not warmed up."""

import datetime as dt
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, User
from credits import forecast
from credits.models import LedgerTransaction
from training.models import CourseManager, TrainingPlan

from . import big_org
from .support import report

WARMUPS = 3
SAMPLES = int(os.environ.get("BENCH_PAGE_SAMPLES", "20"))
MIN_SAMPLES = 3
BUDGET_SECONDS = float(os.environ.get("BENCH_PAGE_SECONDS", "20"))

# What htmx sends when it swaps one part of the page.
HISTORY = {"HX-Request": "true", "HX-Target": "history"}


@dataclass(frozen=True)
class Side:
    organization: Organization
    admin: User
    manager: User
    managed: CourseManager
    plan: TrainingPlan  # a typical plan, the same shape in both organizations
    largest_plan: TrainingPlan


@dataclass(frozen=True)
class Page:
    name: str
    url: Callable[[Side], str]
    role: str = "admin"
    headers: dict = field(default_factory=dict)


def _second_page_cursor(side: "Side") -> int:
    """What the history's "Older" link names on its first page: the 25th newest row."""
    return (
        LedgerTransaction.objects.filter(organization=side.organization)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[24]
    )


def _days_ago(days: int) -> str:
    return (timezone.localdate() - dt.timedelta(days=days)).isoformat()


PAGES = [
    Page("dashboard", lambda s: reverse("dashboard")),
    Page("credits", lambda s: reverse("credits:overview")),
    # The history's second page and a month of redemptions, as its links and filters ask.
    Page(
        "credits_history",
        lambda s: reverse("credits:overview") + f"?before={_second_page_cursor(s)}",
        headers=HISTORY,
    ),
    Page(
        "credits_history_dates",
        lambda s: (
            reverse("credits:overview") + f"?kind=redeem&start={_days_ago(30)}&end={_days_ago(0)}"
        ),
        headers=HISTORY,
    ),
    Page("credits_as_of", lambda s: reverse("credits:overview") + f"?as_of={_days_ago(365)}"),
    Page("allocations", lambda s: reverse("training:allocations")),
    Page("billing", lambda s: reverse("billing:overview")),
    Page("add_credits", lambda s: reverse("billing:add_credits")),
    Page("plans", lambda s: reverse("training:plans")),
    Page("plan", lambda s: reverse("training:plan", args=[s.plan.pk])),
    Page("plan_largest", lambda s: reverse("training:plan", args=[s.largest_plan.pk])),
    Page("cart", lambda s: reverse("catalog:cart")),
    Page("catalog", lambda s: reverse("catalog:index")),
    Page("my_courses", lambda s: reverse("training:my_courses"), role="manager"),
    Page(
        "managed_course",
        lambda s: reverse("training:managed_course", args=[s.managed.pk]),
        role="manager",
    ),
    # Support looks at one organization's ledger: the admin's own filters and search.
    Page(
        "admin_transactions",
        lambda s: f"/admin/credits/ledgertransaction/?organization__id__exact={s.organization.pk}",
        role="staff",
    ),
    Page(
        "admin_entries",
        lambda s: f"/admin/credits/ledgerentry/?q={s.organization.name.replace(' ', '+')}",
        role="staff",
    ),
    Page(
        "admin_lots",
        lambda s: f"/admin/credits/lot/?organization__id__exact={s.organization.pk}",
        role="staff",
    ),
]


def _side(label: str) -> Side:
    organization = big_org.organization(label)
    manager = big_org.manager_of(organization)
    plans = TrainingPlan.objects.filter(organization=organization)
    return Side(
        organization=organization,
        admin=big_org.admin_of(organization),
        manager=manager,
        managed=CourseManager.objects.filter(organization=organization, user=manager).first(),
        plan=plans.get(name="Bench plan 002"),
        largest_plan=plans.get(name="Bench plan 001"),
    )


def logged_in(user: User) -> Client:
    client = Client()
    if not client.login(email=user.email, password=big_org.BENCH_PASSWORD):
        raise SystemExit(f"pages_at_scale: {user.email} cannot log in with the bench password")
    return client


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def _measure(page: Page, client: Client, url: str, label: str) -> dict:
    started = time.monotonic()
    timings: list[float] = []
    warm = 0
    size = 0
    while len(timings) < SAMPLES:
        begun = time.perf_counter()
        try:
            response = client.get(url, headers=page.headers)
        except Exception as error:
            raise SystemExit(
                f"pages_at_scale: {page.name} ({label}) {url} raised {error!r}"
            ) from error
        elapsed = time.perf_counter() - begun
        if response.status_code != 200:
            raise SystemExit(
                f"pages_at_scale: {page.name} ({label}) {url} answered "
                f"{response.status_code}: {response.content[:300]!r}"
            )
        size = len(response.content)
        spent = time.monotonic() - started
        if warm < WARMUPS:
            warm += 1
            if spent <= BUDGET_SECONDS / 4:
                continue
            # A slow page warms up once; one slower than the whole budget is not warmed up at
            # all (a compiled template or a warm cache is nothing next to it): its first
            # request counts.
            warm = WARMUPS
            if spent <= BUDGET_SECONDS:
                continue
        timings.append(elapsed)
        if spent > BUDGET_SECONDS and len(timings) >= MIN_SAMPLES:
            break
    ordered = sorted(timings)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(_percentile(ordered, 0.95) * 1000, 1),
        "kb": round(size / 1024, 1),
        "n": len(ordered),
    }


def run() -> None:
    sides = {label: _side(label) for label in ("small", "big")}
    # What beat's hourly job has done in production: the dashboard reads its stored row.
    for side in sides.values():
        forecast.forecast_refresh(organization_id=side.organization.pk)
    staff = logged_in(User.objects.get(email=big_org.STAFF_EMAIL))
    clients = {
        label: {"admin": logged_in(side.admin), "manager": logged_in(side.manager), "staff": staff}
        for label, side in sides.items()
    }
    pages = []
    for page in PAGES:
        figures = {
            label: _measure(page, clients[label][page.role], page.url(side), label)
            for label, side in sides.items()
        }
        print(
            f"pages_at_scale: {page.name}: {figures['small']['p50_ms']} ms / "
            f"{figures['big']['p50_ms']} ms",
            file=sys.stderr,
            flush=True,
        )
        pages.append(
            {
                "page": page.name,
                **figures,
                "ratio": round(figures["big"]["p50_ms"] / max(figures["small"]["p50_ms"], 0.1), 1),
            }
        )
    report(bench="pages_at_scale", pages=pages)
