"""credits/rules.py and the ledger's SQL state each rule once per language: these prove the two
give the same answers (usable lots, consumption order) and that the kind groups cover every
kind once."""

import datetime as dt
import itertools

import pytest
from django.db import connection
from django.utils import timezone

from credits import rules, services
from credits.models import Holding, LedgerEntry, LedgerTransaction, Lot
from tests.credits.factories import key, redeem

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def lot_grid(organization):
    """A lot for every combination that matters at AT: expiry none, past, exactly AT or ahead;
    marked expired or not; revoked or not. Written directly: the point is the rule, not how a
    lot came to be so."""
    lots = []
    for expires_at, expired_at, revoked_at in itertools.product(
        [None, AT - HOUR, AT, AT + HOUR], [None, AT - 2 * HOUR], [None, AT - 2 * HOUR]
    ):
        lots.append(
            Lot.objects.create(
                organization=organization,
                source=Lot.Source.GRANT,
                quantity=1,
                invoiced_at=AT - dt.timedelta(days=30),
                expires_at=expires_at,
                expired_at=expired_at,
                revoked_at=revoked_at,
                created_at=AT - dt.timedelta(days=30),
            )
        )
    return lots


def _usable_by_definition(lot: Lot, at: dt.datetime) -> bool:
    return (
        lot.expired_at is None
        and lot.revoked_at is None
        and (lot.expires_at is None or lot.expires_at > at)
    )


def test_python_and_sql_agree_on_which_lots_are_usable(organization, lot_grid):
    expected = {lot.pk for lot in lot_grid if _usable_by_definition(lot, AT)}
    # Neither everything nor nothing: the grid exercises both answers.
    assert 0 < len(expected) < len(lot_grid)
    in_python = set(
        Lot.objects.filter(rules.lot_usable(AT), organization=organization).values_list(
            "pk", flat=True
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM credits_lot WHERE organization_id = %s"
            " AND credits_lot_usable(expires_at, expired_at, revoked_at, %s)",
            [organization.pk, AT],
        )
        in_sql = {row[0] for row in cursor.fetchall()}
    assert in_python == expected
    assert in_sql == expected


def test_the_rule_reaches_lots_through_a_prefix(organization, lot_grid):
    pool = services.pool_account(organization=organization)
    Holding.objects.bulk_create(Holding(account=pool, lot=lot, quantity=1) for lot in lot_grid)
    usable = set(
        Holding.objects.filter(rules.lot_usable(AT, "lot__"), account=pool).values_list(
            "lot_id", flat=True
        )
    )
    assert usable == {lot.pk for lot in lot_grid if _usable_by_definition(lot, AT)}


def test_credits_lot_usable_is_inlined_into_the_query_that_calls_it(organization):
    # Inlined, it costs no call per row and the planner sees its conditions: here the partial
    # index of current lots (WHERE expired_at IS NULL AND revoked_at IS NULL) becomes usable,
    # which it could not be for an opaque function call.
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM credits_lot"
            " WHERE credits_lot_usable(expires_at, expired_at, revoked_at, %s)",
            [AT],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "credits_lot_usable" not in plan
    assert "lot_current_in_order" in plan


def _lot(organization, *, invoiced_at, expires_at, reference):
    return services.lot_grant(
        organization=organization,
        quantity=1,
        source="grant",
        invoice_date=invoiced_at,
        expires_at=expires_at,
        reference=reference,
        idempotency_key=key("grant"),
    )


def test_credits_take_consumes_lots_in_the_python_consumption_order(organization):
    organization.lot_validity_days = None  # so that lots granted without an expiry have none
    organization.save(update_fields=["lot_validity_days"])
    now = timezone.now()
    day = dt.timedelta(days=1)
    # Granted out of order, with ties on the expiry (then the invoice date decides) and on
    # both dates (then the id), and two lots that never expire (last, oldest invoice first).
    for reference, invoiced, expires in [
        ("never-new", now - day, None),
        ("late", now - 5 * day, now + 90 * day),
        ("never-old", now - 9 * day, None),
        ("soon-newer", now - 2 * day, now + 10 * day),
        ("soon-older", now - 8 * day, now + 10 * day),
        ("tie-a", now - 3 * day, now + 40 * day),
        ("tie-b", now - 3 * day, now + 40 * day),
    ]:
        _lot(organization, invoiced_at=invoiced, expires_at=expires, reference=reference)
    pool = services.pool_account(organization=organization)

    taken = []
    for _ in range(Lot.objects.filter(organization=organization).count()):
        txn = redeem(pool, 1)
        (entry,) = LedgerEntry.objects.filter(transaction_id=txn.pk)
        taken.append(entry.lot_id)

    in_order = list(
        Lot.objects.filter(organization=organization)
        .order_by(*rules.CONSUMPTION_ORDER)
        .values_list("pk", flat=True)
    )
    assert taken == in_order
    references = dict(Lot.objects.values_list("pk", "reference"))
    assert [references[pk] for pk in taken][:2] == ["soon-older", "soon-newer"]
    assert [references[pk] for pk in taken][-2:] == ["never-old", "never-new"]


_ORDERED_LOTS_SQL = "SELECT l.id FROM credits_lot l WHERE l.organization_id = %s ORDER BY {order}"


def test_the_sql_order_list_is_the_orm_order(organization, lot_grid):
    for reverse in (False, True):
        orm = list(
            Lot.objects.filter(organization=organization)
            .order_by(*rules.consumption_order(reverse=reverse))
            .values_list("pk", flat=True)
        )
        order = rules.consumption_order_sql("l", reverse=reverse)
        with connection.cursor() as cursor:
            cursor.execute(_ORDERED_LOTS_SQL.format(order=order), [organization.pk])
            sql = [row[0] for row in cursor.fetchall()]
        assert sql == orm
        # Never-expiring lots (NULL) are consumed last, so given back first.
        first = Lot.objects.get(pk=orm[0])
        assert (first.expires_at is None) is reverse


def test_every_kind_is_in_exactly_one_group():
    groups = [
        rules.BOUGHT_KINDS,
        rules.USED_KINDS,
        rules.EXPIRED_OR_REVOKED_KINDS,
        rules.NEUTRAL_KINDS,
    ]
    placed = [kind for group in groups for kind in group]
    assert sorted(placed) == sorted(LedgerTransaction.Kind.values)
    assert set(rules.REVERSIBLE_KINDS) <= set(rules.USED_KINDS)
