"""Reads of the ledger. Figures count only lots still valid at `now`, so they are right even
in the minutes between a lot's expiry and the job that records it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization

from . import rules
from .models import (
    Account,
    DailyTotal,
    Hold,
    Holding,
    LedgerEntry,
    LedgerTransaction,
    Lot,
    Overage,
)

EXPIRING_SOON_DAYS = 30


@dataclass(frozen=True)
class Balance:
    """The organization's credits as every page and check shows them.

    `available` has one meaning everywhere: what Confirm users (and every other spend from
    the general pool) can take now, the pool's valid credits less its holds. Credits
    earmarked for courses and managers are not available to plans: they are a figure of
    their own (`earmarked`).
    """

    total: int
    held: int
    expiring_soon: int
    earmarked: int = 0

    @property
    def available(self) -> int:
        return self.total - self.held

    @property
    def spendable(self) -> int:
        """`available`, never below zero (holds may outlast lots that expired under them)."""
        return max(self.available, 0)

    @property
    def over_assigned(self) -> bool:
        """Assigned (held) credits exceed the credits there are (seed 002's red balance)."""
        return self.held > self.total

    @property
    def nearly_over_assigned(self) -> bool:
        """Assigned credits have reached settings.OVER_ASSIGNED_SHARE of the credits there
        are: the admins' alert email and the dashboard's banner."""
        return self.held > 0 and self.held >= settings.OVER_ASSIGNED_SHARE * self.total


# What an account can use is its cached balance less its live holdings of lots already past
# their expiry that the hourly job has not marked yet: the definition credits_take applies
# under the account's lock (credits/sql/credits_take.sql). Marked and revoked lots have no
# live holding left (the audit proves it), so neither needs a look at the lots. Both sums run
# on index holding_live_order (account, lot's expiry): a short range each, however many lots
# the account ever had.
def _past_due(account_ids: list[int], now: dt.datetime) -> dict[int, int]:
    return dict(
        Holding.objects.filter(account_id__in=account_ids, live=True, lot_expires_at__lte=now)
        .values("account_id")
        .annotate(total=Sum("quantity"))
        .values_list("account_id", "total")
    )


def _past_due_and_expiring(account_id: int, now: dt.datetime) -> tuple[int, int]:
    """One account's past-due credits and those expiring within EXPIRING_SOON_DAYS: one
    range of its live holdings, up to the end of that window."""
    soon = now + dt.timedelta(days=EXPIRING_SOON_DAYS)
    figures = Holding.objects.filter(
        account_id=account_id, live=True, lot_expires_at__lte=soon
    ).aggregate(
        past_due=Coalesce(Sum("quantity", filter=Q(lot_expires_at__lte=now)), 0),
        expiring=Coalesce(Sum("quantity", filter=Q(lot_expires_at__gt=now)), 0),
    )
    return figures["past_due"], figures["expiring"]


def account_balance(*, account: Account, now: dt.datetime | None = None) -> Balance:
    now = now or timezone.now()
    balance, held = Account.objects.values_list("balance", "held").get(pk=account.pk)
    past_due, expiring = _past_due_and_expiring(account.pk, now)
    return Balance(total=balance - past_due, held=held, expiring_soon=expiring)


def organization_balance(*, organization: Organization, now: dt.datetime | None = None) -> Balance:
    """The general pool's figures (what plans spend), with the credits earmarked for courses
    and managers beside them. From the accounts' cached figures: a handful of index reads,
    however long the organization's history."""
    now = now or timezone.now()
    is_pool = Q(kind=Account.Kind.POOL)
    accounts = Account.objects.filter(organization=organization).aggregate(
        pool=Max("pk", filter=is_pool),
        pool_balance=Coalesce(Sum("balance", filter=is_pool), 0),
        pool_held=Coalesce(Sum("held", filter=is_pool), 0),
        earmarked=Coalesce(Sum("balance", filter=~is_pool), 0),
    )
    pool = accounts["pool"]
    if pool is None:
        return Balance(total=0, held=0, expiring_soon=0)
    past_due, expiring = _past_due_and_expiring(pool, now)
    # Past-due holdings of the earmarked accounts, found from the few lots due but not yet
    # marked (index lot_expiry_due) rather than from thousands of accounts one by one. In two
    # steps: as one join the planner guesses thousands of due lots (most of an old
    # organization's lots are past their expiry, only not among the unmarked ones) and scans
    # every holding; and there is usually no due lot at all, so no second query.
    due = list(
        Lot.objects.filter(
            organization=organization, expired_at__isnull=True, expires_at__lte=now
        ).values_list("pk", flat=True)
    )
    past_due_earmarked = (
        Holding.objects.filter(lot_id__in=due, live=True)
        .exclude(account_id=pool)
        .aggregate(total=Coalesce(Sum("quantity"), 0))["total"]
        if due
        else 0
    )
    return Balance(
        total=accounts["pool_balance"] - past_due,
        held=accounts["pool_held"],
        expiring_soon=expiring,
        earmarked=accounts["earmarked"] - past_due_earmarked,
    )


def lots_with_remaining(*, organization: Organization, past: bool = False) -> QuerySet[Lot]:
    """The organization's current lots (not expired, not revoked), soonest expiry first, or
    with `past` its expired and revoked ones, latest first; each with `remaining` credits.
    `remaining` is a subquery over the lot's live holdings, so a page of lots costs a page,
    however many lots the organization has had."""
    remaining = (
        Holding.objects.filter(lot=OuterRef("pk"), live=True)
        .values("lot")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    lots = Lot.objects.filter(organization=organization).annotate(
        remaining=Coalesce(Subquery(remaining), 0)
    )
    current = Q(expired_at__isnull=True, revoked_at__isnull=True)
    if past:
        # Latest first: the consumption order reversed (index lot_past_in_order, backwards).
        return lots.exclude(current).order_by(*rules.consumption_order(reverse=True))
    return lots.filter(current).order_by(*rules.CONSUMPTION_ORDER)


def ledger_history(
    *,
    organization: Organization,
    kinds: list[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> QuerySet[LedgerTransaction]:
    """Transactions newest first, each with `net`: its change to the organization's credits
    (allocations between accounts net to zero). `net` is a subquery per row, over that
    transaction's entries (by index): a page of history costs a page, not all history."""
    transactions = LedgerTransaction.objects.filter(organization=organization)
    if kinds:
        transactions = transactions.filter(kind__in=kinds)
    if start:
        transactions = transactions.filter(created_at__gte=start)
    if end:
        transactions = transactions.filter(created_at__lt=end)
    net = (
        LedgerEntry.objects.filter(transaction=OuterRef("pk"))
        .values("transaction")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    return (
        transactions.select_related("actor", "account__course", "account__manager")
        .annotate(net=Coalesce(Subquery(net), 0))
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class HistoryPage:
    """One page of history, found from a neighbouring row instead of an offset and a total
    count: both would read every transaction before the page."""

    rows: list[LedgerTransaction]
    newer: int | None  # the id to ask `after` for the page before, if there is one
    older: int | None  # the id to ask `before` for the page after, if there is one


def history_page(
    *,
    history: QuerySet[LedgerTransaction],
    size: int,
    before: int | None = None,
    after: int | None = None,
) -> HistoryPage:
    """`size` rows of `history` (newest first): the first ones, those older than the row
    `before`, or those newer than the row `after`. A cursor naming no row of this history
    (another organization's, or a filtered-out one) starts from the newest."""
    cursor_id = before or after
    cursor = history.filter(pk=cursor_id).values("created_at", "pk").first() if cursor_id else None
    if cursor is not None:
        at, pk = cursor["created_at"], cursor["pk"]
        if before:
            # (created_at, id) < the cursor's, as a range on created_at that the index serves.
            older = history.filter(created_at__lte=at).exclude(created_at=at, id__gte=pk)
            rows = list(older[: size + 1])
            if rows:
                return HistoryPage(rows[:size], rows[0].pk, _last_if_more(rows, size))
        else:
            newer = (
                history.filter(created_at__gte=at)
                .exclude(created_at=at, id__lte=pk)
                .order_by("created_at", "id")
            )
            rows = list(newer[: size + 1])
            if rows:
                page = rows[:size][::-1]
                return HistoryPage(page, page[0].pk if len(rows) > size else None, page[-1].pk)
    # No cursor, or one past either end (a Back button after new rows, an edited link).
    rows = list(history[: size + 1])
    return HistoryPage(rows[:size], None, _last_if_more(rows, size))


def _last_if_more(rows: list[LedgerTransaction], size: int) -> int | None:
    """The id to go on from, when there are more rows than the page shows."""
    return rows[size - 1].pk if len(rows) > size else None


# What the pool's entries before `at` still owe to lots that had expired by `at` but whose
# expiry was not yet written then (the job writes it at expired_at, later). Every other lot
# expired by `at` has had its expiry entries written before `at`: its entries sum to zero.
# The window is the expression of index lot_due_window (migration 0013), spelled the same so
# that the index serves it: from the lot's expiry to the moment the job marked it, open while
# unmarked.
_DUE_AT_SQL = """
SELECT COALESCE(SUM(e.quantity), 0)
FROM credits_lot l JOIN credits_ledgerentry e ON e.lot_id = l.id
WHERE l.expires_at IS NOT NULL
  AND tstzrange(l.expires_at, CASE WHEN l.expired_at IS NOT NULL
                                   THEN greatest(l.expired_at, l.expires_at) END, '[]')
      @> %(at)s::timestamptz
  AND l.organization_id = %(organization)s
  AND e.account_id = %(account)s AND e.created_at < %(at)s
"""


def balance_as_of(*, organization: Organization, at: dt.datetime) -> int:
    """The general pool's credits usable at the instant `at` (the same pool every other
    figure of the page counts; earmarked credits are not in it).

    The entries written strictly before `at` (an entry at `at` belongs to what follows, as in
    the history's half-open day ranges), less what lots that had expired by `at` still held
    then: a lot is worth nothing from its `expires_at` on, whether or not the expiry job had
    run yet. The entries before `at` are the daily totals of the UTC days before the one `at`
    falls in, plus that day's entries up to `at`: a few thousand rows at most, whatever the
    length of history."""
    pool = (
        Account.objects.filter(organization=organization, kind=Account.Kind.POOL)
        .values_list("pk", flat=True)
        .first()
    )
    if pool is None:
        return 0
    day = at.astimezone(dt.UTC).date()
    day_start = dt.datetime.combine(day, dt.time(), dt.UTC)
    days = DailyTotal.objects.filter(account_id=pool, day__lt=day).aggregate(
        total=Coalesce(Sum(F("gained") + F("lost")), 0)
    )["total"]
    today = LedgerEntry.objects.filter(
        account_id=pool, created_at__gte=day_start, created_at__lt=at
    ).aggregate(total=Coalesce(Sum("quantity"), 0))["total"]
    with connection.cursor() as cursor:
        cursor.execute(_DUE_AT_SQL, {"at": at, "organization": organization.pk, "account": pool})
        (due,) = cursor.fetchone()
    return days + today - due


def active_holds(*, account: Account) -> QuerySet[Hold]:
    return Hold.objects.filter(account=account, status=Hold.Status.ACTIVE)


def overages(*, organization: Organization) -> QuerySet[Overage]:
    return Overage.objects.filter(organization=organization).order_by("-created_at")


@dataclass(frozen=True)
class AccountFigures:
    available: int
    held: int
    used: int


NO_FIGURES = AccountFigures(available=0, held=0, used=0)


def account_figures(
    *, accounts: list[Account], now: dt.datetime | None = None
) -> dict[int, AccountFigures]:
    """For each account: what it can still give (valid credits less holds), what pending
    holds reserve, and what it has spent (from the daily totals). Three queries, whatever
    the number of accounts or the length of their history."""
    now = now or timezone.now()
    ids = [account.pk for account in accounts]
    cached = {
        pk: (balance, held)
        for pk, balance, held in Account.objects.filter(pk__in=ids).values_list(
            "pk", "balance", "held"
        )
    }
    past_due = _past_due(ids, now)
    valid = {pk: balance - past_due.get(pk, 0) for pk, (balance, _) in cached.items()}
    held = {pk: held for pk, (_, held) in cached.items()}
    spent = dict(
        DailyTotal.objects.filter(account_id__in=ids, kind__in=rules.USED_KINDS)
        .values("account_id")
        .annotate(total=Sum(F("gained") + F("lost")))
        .values_list("account_id", "total")
    )
    return {
        pk: AccountFigures(
            available=valid.get(pk, 0) - held.get(pk, 0),
            held=held.get(pk, 0),
            used=-spent.get(pk, 0),
        )
        for pk in ids
    }
