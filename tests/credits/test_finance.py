"""The finance report (issue 18, part 2): over a generated year of every kind of activity,
each month's identity holds exactly, in credits and in money at each lot's cost basis, and
the last closing figure is what the organization still holds."""

import datetime as dt
import random
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Sum
from django.urls import reverse

from billing.models import Purchase
from credits import services
from credits.audit import ledger_audit
from credits.finance import finance_months
from credits.models import Account, Holding, LedgerEntry, Lot
from tests.accounts.factories import UserFactory
from tests.billing.factories import PurchaseFactory
from tests.catalog.factories import CourseFactory
from tests.credits.factories import key

pytestmark = pytest.mark.django_db


def _bought(organization, quantity: int, paid_minor: int, at: dt.datetime) -> Lot:
    lot = services.lot_grant(
        organization=organization,
        quantity=quantity,
        source="purchase",
        invoice_date=at,
        reference="",
        idempotency_key=key("buy"),
    )
    PurchaseFactory(organization=organization, quantity=quantity, amount_minor=paid_minor, lot=lot)
    return lot


def _a_year(organization) -> None:
    """Twelve months of purchases at odd prices (a third of a cent per credit, and so on),
    free grants, goodwill, redemptions, holds captured and released, reversals, partial and
    full refunds, support's adjustments both ways, transfers to a course and a manager, and
    expiries: everything that writes entries."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    rng = random.Random(18)
    pool = services.pool_account(organization=organization)
    course = services.course_account(organization=organization, course=CourseFactory())
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    start = dt.datetime(2025, 1, 3, 9, tzinfo=zone)
    lots = []
    for month in range(12):
        at = start + dt.timedelta(days=30 * month)
        with time_machine.travel(at, tick=False):
            lots.append(_bought(organization, rng.randint(30, 90), rng.randint(1_001, 99_999), at))
            services.lot_grant(
                organization=organization,
                quantity=5,
                source="grant",
                invoice_date=at,
                reference="",
                idempotency_key=key("free"),
                expires_at=at + dt.timedelta(days=45),
            )
            services.goodwill_grant(
                organization=organization, quantity=2, reason="sorry", actor=staff,
                idempotency_key=key("gw"),
            )  # fmt: skip
        with time_machine.travel(at + dt.timedelta(days=3), tick=False):
            redeemed = services.credits_redeem(
                account=pool, quantity=rng.randint(5, 15), reference="r", idempotency_key=key()
            )
            if month % 3 == 0:
                services.credits_reverse(
                    original=redeemed, quantity=2, reason="wrong level", idempotency_key=key()
                )
            services.credits_transfer(
                source=pool, destination=course, quantity=3, idempotency_key=key()
            )
            services.credits_redeem(
                account=course, quantity=2, reference="course", idempotency_key=key()
            )
            hold = services.hold_place(
                account=pool, quantity=4, reference="h", idempotency_key=key()
            )
            if month % 2:
                services.hold_capture(hold=hold)
            else:
                services.hold_release(hold=hold)
            services.credits_adjust(
                account=pool, quantity=rng.choice([-1, 1, 3]), reason="fix", actor=staff,
                idempotency_key=key(),
            )  # fmt: skip
        with time_machine.travel(at + dt.timedelta(days=10), tick=False):
            if month % 4 == 1:
                services.lot_revoke(
                    lot=lots[-1], reason="partial refund", idempotency_key=key(), quantity=7
                )
            if month == 6:
                services.lot_revoke(lot=lots[2], reason="refund", idempotency_key=key())
        with time_machine.travel(at + dt.timedelta(days=29), tick=False):
            services.lots_expire()


def test_every_month_of_a_year_reconciles_in_credits_and_in_money(organization):
    organization.lot_validity_days = 120
    organization.save()
    _a_year(organization)
    with time_machine.travel(dt.datetime(2026, 2, 1, tzinfo=dt.UTC), tick=False):
        services.lots_expire()
    months = finance_months(organization=organization)
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    assert len(months) >= 12
    previous = None
    for m in months:
        for part in ("credits", "money"):
            flows = [getattr(getattr(m, name), part) for name in ("added", "consumed", "expired")]
            revoked = getattr(m.revoked, part)
            assert getattr(m.opening, part) + flows[0] - flows[1] - flows[2] - revoked == getattr(
                m.closing, part
            ), (m.month, part)
        if previous is not None:
            assert m.opening == previous.closing
        # The closing credits, read from the ledger another way: every entry before the
        # next month began in the organization's zone.
        ends = dt.datetime.combine(
            (m.month + dt.timedelta(days=32)).replace(day=1), dt.time.min, tzinfo=zone
        )
        ledger = LedgerEntry.objects.filter(
            account__organization=organization, created_at__lt=ends
        ).aggregate(total=Sum("quantity"))["total"]
        assert m.closing.credits == ledger, m.month
        previous = m

    # Each bucket against the ledger read another way, over the year.
    def total(name, part="credits"):
        return sum(getattr(getattr(m, name), part) for m in months)

    def entries(*kinds, **only):
        found = LedgerEntry.objects.filter(
            account__organization=organization, transaction__kind__in=kinds, **only
        )
        return found.aggregate(total=Sum("quantity"))["total"] or 0

    lots = Lot.objects.filter(organization=organization).values_list("quantity", flat=True)
    assert total("added") == sum(lots)  # every lot, support's additions included
    paid = Purchase.objects.filter(organization=organization).values_list("amount_minor", flat=True)
    assert total("added", "money") == sum(paid)
    assert total("consumed") == -entries("redeem", "capture", "reverse") > 0
    assert total("expired") == -entries("expire") > 0
    deducted = entries("adjust", quantity__lt=0)
    assert total("revoked") == -entries("revoke", "restore") - deducted > 0
    # What is left is what the organization's accounts hold, and its cost basis.
    held = Account.objects.filter(organization=organization).values_list("balance", flat=True)
    assert previous.closing.credits == sum(held)
    value = Decimal(0)
    for holding in Holding.objects.filter(lot__organization=organization, quantity__gt=0):
        lot = holding.lot
        paid = Purchase.objects.filter(lot=lot).values_list("amount_minor", flat=True).first()
        value += Decimal(holding.quantity * (paid or 0)) / lot.quantity
    # Each entry's money is rounded to a millionth of a minor unit once: the valuation of
    # the holdings differs by less than that per entry.
    assert abs(previous.closing.money - value) < Decimal("0.001")
    assert ledger_audit().ok


def test_the_page_and_the_csv_show_the_months(organization, admin_client, outsider_client):
    at = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    with time_machine.travel(at, tick=False):
        lot = _bought(organization, 3, 1_000, at)  # 3 credits for $10.00: $3.333… each
        services.credits_redeem(
            account=services.pool_account(organization=organization),
            quantity=1,
            reference="r",
            idempotency_key=key(),
        )
    assert lot.quantity == 3
    page = admin_client.get(reverse("credits:finance")).content.decode()
    assert page.count('data-testid="finance-month"') == 1
    assert ">6.67<" in page  # the two credits left, at their cost basis
    csv = admin_client.get(reverse("credits:finance_csv")).content.decode().splitlines()
    assert csv[0].startswith("month,opening credits,opening USD,added credits")
    assert csv[1] == "2026-03,0,0.00,3,10.00,1,3.33,0,0.00,0,0.00,2,6.67"
    empty = outsider_client.get(reverse("credits:finance")).content.decode()
    assert "Nothing to report yet" in empty


def test_money_is_shown_in_each_currencys_own_units(db, admin_client, organization):
    from credits.finance import Figure

    assert Figure(1, Decimal(1000), 0).money_major == Decimal(1000)  # yen: no decimals
    assert Figure(1, Decimal(1234), 3).money_major == Decimal("1.234")  # dinars: three
    organization.currency = "JPY"
    organization.save()
    at = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    with time_machine.travel(at, tick=False):
        _bought(organization, 4, 1_000, at)  # ¥1,000 for 4 credits
    csv = admin_client.get(reverse("credits:finance_csv")).content.decode().splitlines()
    assert csv[1] == "2026-03,0,0,4,1000,0,0,0,0,0,0,4,1000"
