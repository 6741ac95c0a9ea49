"""Random sequences of grants, redemptions, holds, captures, releases, transfers, expiries
(with a controlled clock) and replays, checked step by step against a plain-Python model of
the ledger, with the full audit after every step."""

import datetime as dt
import itertools
from dataclasses import dataclass, field

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts.models import Organization
from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import Overage
from credits.services import HoldNotActive, InsufficientCredits
from tests.accounts.factories import UserFactory
from tests.catalog.factories import CourseFactory

ACCOUNTS = ["pool", "course", "manager"]
_orgs = itertools.count()


@dataclass
class ModelLot:
    id: int
    invoiced_at: dt.datetime
    expires_at: dt.datetime
    expired: bool = False
    held_by: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelHold:
    real: object
    account: str
    quantity: int
    overage: bool
    status: str = "active"


class LedgerModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Each example runs in a savepoint rolled back at teardown: examples start from an
        # empty ledger (lots_expire is global) and replay identically when shrinking.
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        self.clock = time_machine.travel(dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC), tick=False)
        self.traveller = self.clock.start()
        n = next(_orgs)
        self.org = Organization.objects.create(name=f"Stateful {n}", slug=f"stateful-{n}")
        course = CourseFactory()
        self.accounts = {
            "pool": services.pool_account(organization=self.org),
            "course": services.course_account(organization=self.org, course=course),
            "manager": services.manager_account(
                organization=self.org, course=course, manager=UserFactory()
            ),
        }
        self.lots: list[ModelLot] = []
        self.held = dict.fromkeys(ACCOUNTS, 0)
        self.holds: list[ModelHold] = []
        self.overage = 0
        self.keys = itertools.count()
        self.last_redeem = None

    def teardown(self):
        self.clock.stop()
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)

    # --- the model ------------------------------------------------------------------------

    def now(self):
        return timezone.now()

    def usable(self, account: str) -> list[ModelLot]:
        now = self.now()
        lots = [
            lot
            for lot in self.lots
            if not lot.expired and lot.expires_at > now and lot.held_by.get(account, 0) > 0
        ]
        return sorted(lots, key=lambda lot: (lot.expires_at, lot.invoiced_at, lot.id))

    def total(self, account: str) -> int:
        return sum(lot.held_by[account] for lot in self.usable(account))

    def take(self, account: str, quantity: int) -> list[tuple[ModelLot, int]]:
        moved = []
        for lot in self.usable(account):
            if quantity == 0:
                break
            part = min(quantity, lot.held_by[account])
            lot.held_by[account] -= part
            quantity -= part
            moved.append((lot, part))
        assert quantity == 0
        return moved

    def key(self) -> str:
        return f"k{next(self.keys)}"

    # --- rules ----------------------------------------------------------------------------

    @rule(quantity=st.integers(1, 40), days_ago=st.integers(0, 400))
    def grant(self, quantity, days_ago):
        invoiced = self.now() - dt.timedelta(days=days_ago)
        lot = services.lot_grant(
            organization=self.org,
            quantity=quantity,
            source="purchase",
            invoice_date=invoiced,
            reference="",
            idempotency_key=self.key(),
        )
        # Usable through the 365th day after the invoice date, in the organization's zone (UTC).
        last_day = invoiced.astimezone(dt.UTC).date() + dt.timedelta(days=365)
        expires = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        self.lots.append(ModelLot(lot.pk, invoiced, expires, held_by={"pool": quantity}))

    @rule(account=st.sampled_from(ACCOUNTS), quantity=st.integers(1, 30), overage=st.booleans())
    def redeem(self, account, quantity, overage):
        available = self.total(account) - self.held[account]
        taken = min(quantity, max(available, 0))
        key = self.key()
        call = {"account": self.accounts[account], "quantity": quantity, "allow_overage": overage}
        if quantity - taken and not overage:
            with pytest.raises(InsufficientCredits) as refused:
                services.credits_redeem(**call, reference="r", idempotency_key=key)
            assert refused.value.shortfall == quantity - taken
            return
        txn = services.credits_redeem(**call, reference="r", idempotency_key=key)
        self.take(account, taken)
        self.overage += quantity - taken
        self.last_redeem = (call, key, txn.pk)

    @precondition(lambda self: self.last_redeem is not None)
    @rule()
    def replay_last_redemption(self):
        call, key, first = self.last_redeem
        assert services.credits_redeem(**call, reference="r", idempotency_key=key).pk == first

    @rule(account=st.sampled_from(ACCOUNTS), quantity=st.integers(1, 20), overage=st.booleans())
    def place_hold(self, account, quantity, overage):
        available = self.total(account) - self.held[account]
        call = {"account": self.accounts[account], "quantity": quantity, "allow_overage": overage}
        if quantity > available and not overage:
            with pytest.raises(InsufficientCredits):
                services.hold_place(**call, reference="h", idempotency_key=self.key())
            return
        real = services.hold_place(**call, reference="h", idempotency_key=self.key())
        self.held[account] += quantity
        self.holds.append(ModelHold(real, account, quantity, overage))

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def capture(self, data):
        hold = data.draw(st.sampled_from(self.holds))
        if hold.status == "released":
            with pytest.raises(HoldNotActive):
                services.hold_capture(hold=hold.real)
            return
        if hold.status == "captured":
            services.hold_capture(hold=hold.real)  # a replay: no change
            return
        available = self.total(hold.account) - (self.held[hold.account] - hold.quantity)
        taken = min(hold.quantity, max(available, 0))
        if hold.quantity - taken and not hold.overage:
            with pytest.raises(InsufficientCredits):
                services.hold_capture(hold=hold.real)
            return
        services.hold_capture(hold=hold.real)
        self.take(hold.account, taken)
        self.overage += hold.quantity - taken
        self.held[hold.account] -= hold.quantity
        hold.status = "captured"

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data):
        hold = data.draw(st.sampled_from(self.holds))
        if hold.status == "captured":
            with pytest.raises(HoldNotActive):
                services.hold_release(hold=hold.real)
            return
        services.hold_release(hold=hold.real)
        if hold.status == "active":
            self.held[hold.account] -= hold.quantity
            hold.status = "released"

    @rule(
        source=st.sampled_from(ACCOUNTS),
        destination=st.sampled_from(ACCOUNTS),
        quantity=st.integers(1, 30),
    )
    def transfer(self, source, destination, quantity):
        if source == destination:
            return
        available = self.total(source) - self.held[source]
        call = {
            "source": self.accounts[source],
            "destination": self.accounts[destination],
            "quantity": quantity,
            "idempotency_key": self.key(),
        }
        if quantity > available:
            with pytest.raises(InsufficientCredits):
                services.credits_transfer(**call)
            return
        services.credits_transfer(**call)
        for lot, part in self.take(source, quantity):
            lot.held_by[destination] = lot.held_by.get(destination, 0) + part

    @rule(days=st.integers(0, 200))
    def advance_clock(self, days):
        self.traveller.shift(dt.timedelta(days=days, hours=1))

    @rule()
    def expire(self):
        now = self.now()
        due = [lot for lot in self.lots if not lot.expired and lot.expires_at <= now]
        assert services.lots_expire() == len(due)
        for lot in due:
            lot.expired = True
            lot.held_by = dict.fromkeys(lot.held_by, 0)

    # --- what must hold after every step ---------------------------------------------------

    @invariant()
    def figures_match_the_model(self):
        for name, account in self.accounts.items():
            balance = selectors.account_balance(account=account)
            assert (balance.total, balance.held) == (self.total(name), self.held[name]), name
        recorded = Overage.objects.filter(organization=self.org).values_list("quantity", flat=True)
        assert sum(recorded) == self.overage

    @invariant()
    def audit_is_clean(self):
        report = ledger_audit()
        assert report.ok, report.violations


@pytest.mark.django_db
def test_ledger_matches_its_model_under_random_operations():
    LedgerModel.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    LedgerModel.TestCase().runTest()
