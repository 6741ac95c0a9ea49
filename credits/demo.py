"""Demo credits for the demo organizations, entered through the services like real ones.

Dates are relative to the first seeding; a re-run finds each step's idempotency key already
used and skips it, so the ledger never grows or conflicts on re-runs.
"""

import datetime as dt

from django.utils import timezone

from accounts.models import Organization, User
from catalog.models import Course

from . import services
from .models import LedgerTransaction


def _done(organization: Organization, key: str) -> bool:
    return LedgerTransaction.objects.filter(organization=organization, idempotency_key=key).exists()


def _grant(organization: Organization, key: str, quantity: int, days_ago: int, ref: str) -> None:
    if not _done(organization, key):
        services.lot_grant(
            organization=organization,
            quantity=quantity,
            source="purchase",
            invoice_date=timezone.now() - dt.timedelta(days=days_ago),
            reference=ref,
            idempotency_key=key,
        )


def seed() -> None:
    acme = Organization.objects.get(slug="acme")
    admin = User.objects.get(email="admin@acme.example")
    pool = services.pool_account(organization=acme)
    # One lot that expires within the month, one recent, one fresh.
    _grant(acme, "demo:acme:lot-1", 120, 350, "demo-invoice-1001")
    _grant(acme, "demo:acme:lot-2", 500, 90, "demo-invoice-1002")
    _grant(acme, "demo:acme:lot-3", 250, 5, "demo-invoice-1003")
    if not _done(acme, "demo:acme:redeem-1"):
        services.credits_redeem(
            account=pool,
            quantity=40,
            reference="Demo: Excel Essentials for Finance",
            idempotency_key="demo:acme:redeem-1",
            actor=admin,
        )
    course = Course.objects.get(slug="harassment-prevention")
    course_pool = services.course_account(organization=acme, course=course)
    if not _done(acme, "demo:acme:allocate-1"):
        services.credits_transfer(
            source=pool,
            destination=course_pool,
            quantity=30,
            idempotency_key="demo:acme:allocate-1",
            actor=admin,
        )
    labs = Organization.objects.get(slug="acme-labs")
    _grant(labs, "demo:labs:lot-1", 100, 30, "demo-invoice-2001")
    globex = Organization.objects.get(slug="globex")
    _grant(globex, "demo:globex:lot-1", 75, 10, "demo-invoice-3001")
