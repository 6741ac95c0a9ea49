"""Support's tools (issue 18, part 5): a lot's expiry extended with a reason, goodwill
credits at no cost; each its own ledger transaction, in the organization's history, never
shortening anything and never reaching another organization."""

import datetime as dt
import uuid
import zoneinfo

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import Holding, LedgerTransaction, Lot
from tests.accounts.factories import UserFactory
from tests.credits.factories import grant, key, redeem

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _audit():
    yield
    report = ledger_audit()
    assert report.ok, report.violations


@pytest.fixture
def staff():
    return UserFactory(email="support@credits.test", is_staff=True, is_superuser=True)


@pytest.fixture
def support(client, staff):
    client.force_login(staff)
    return client


def local_midnight(organization, day: dt.date) -> dt.datetime:
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone)


def extend(lot, expires_at, staff, reason="Customer's launch slipped"):
    return services.lot_extend(
        lot=lot, expires_at=expires_at, reason=reason, actor=staff, idempotency_key=key("x")
    )


def test_goodwill_is_a_lot_of_its_own_at_no_cost_with_the_usual_validity(organization, staff):
    organization.lot_validity_days = 365
    organization.save()
    token = key("goodwill")
    lot = services.goodwill_grant(
        organization=organization,
        quantity=5,
        reason="Outage on March 3",
        actor=staff,
        idempotency_key=token,
    )
    again = services.goodwill_grant(
        organization=organization,
        quantity=5,
        reason="Outage on March 3",
        actor=staff,
        idempotency_key=token,
    )
    assert again.pk == lot.pk and Lot.objects.count() == 1
    assert lot.source == "goodwill"
    txn = LedgerTransaction.objects.get(kind="goodwill")
    assert (txn.memo, txn.actor, txn.quantity) == ("Outage on March 3", staff, 5)
    assert selectors.organization_balance(organization=organization).total == 5
    today = timezone.now().astimezone(zoneinfo.ZoneInfo(organization.time_zone)).date()
    assert lot.expires_at == local_midnight(organization, today + dt.timedelta(days=366))
    with pytest.raises(services.InvalidOperation, match="Say why"):
        services.goodwill_grant(
            organization=organization, quantity=1, reason="  ", actor=staff, idempotency_key=key()
        )


def test_an_extension_moves_the_lot_and_its_holdings_later_and_is_in_the_history(
    organization, staff, admin_client
):
    lot = grant(organization, 10, expires_at=timezone.now() + dt.timedelta(days=3))
    redeem(services.pool_account(organization=organization), 4)
    later = lot.expires_at + dt.timedelta(days=30)
    txn = extend(lot, later, staff)
    lot.refresh_from_db()
    assert lot.expires_at == later
    assert set(Holding.objects.filter(lot=lot).values_list("lot_expires_at", flat=True)) == {later}
    assert (txn.kind, txn.memo, txn.entries.count()) == ("extend", "Customer's launch slipped", 0)
    # The credits stay where they were, and stay usable past the old expiry.
    balance = selectors.organization_balance(organization=organization, now=later - dt.timedelta(1))
    assert balance.total == 6
    history = admin_client.get(reverse("credits:overview")).content.decode()
    assert "Expiry extended" in history and "Customer&#x27;s launch slipped" in history


@pytest.mark.parametrize(
    "state, says",
    [
        ("expired", "has expired or been revoked"),
        ("revoked", "has expired or been revoked"),
        ("past due", "validity has ended already"),
        ("never expires", "never expires"),
        ("earlier", "must be later than the current one"),
        ("same", "must be later than the current one"),
    ],
)
def test_an_extension_never_brings_credits_back_nor_shortens_a_lot(
    organization, staff, state, says
):
    soon = timezone.now() + dt.timedelta(days=3)
    lot = grant(organization, 10, days_ago=10, expires_at=soon)
    target = soon + dt.timedelta(days=30)
    if state == "expired":
        Lot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - dt.timedelta(hours=1))
        services.lots_expire()
    elif state == "revoked":
        services.lot_revoke(lot=lot, reason="refund", idempotency_key=key())
    elif state == "past due":
        Lot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - dt.timedelta(hours=1))
    elif state == "never expires":
        Lot.objects.filter(pk=lot.pk).update(expires_at=None)
    elif state == "earlier":
        target = soon - dt.timedelta(days=1)
    elif state == "same":
        target = soon
    before = Lot.objects.get(pk=lot.pk).expires_at
    with pytest.raises(services.InvalidOperation, match=says):
        extend(lot, target, staff)
    assert Lot.objects.get(pk=lot.pk).expires_at == before
    assert not LedgerTransaction.objects.filter(kind="extend").exists()


def test_the_admin_actions_extend_and_grant_with_a_reason_and_refuse_plainly(
    support, organization, other_organization
):
    lot = grant(organization, 10, expires_at=local_midnight(organization, dt.date(2027, 1, 10)))
    other = grant(other_organization, 7)
    url = reverse("admin:credits_lot_changelist")
    form = {"action": "extend_expiry", "_selected_action": [lot.pk], "apply": "1"}
    shown = support.post(url, {"action": "extend_expiry", "_selected_action": [lot.pk]})
    assert "Extend the expiry of lot" in shown.content.decode()
    for fields, says in [
        ({"last_day": "2027-02-01", "reason": ""}, "Give the reason"),
        ({"last_day": "2027-02-01", "reason": "a\x00b"}, "Null characters are not allowed"),
        ({"last_day": "2027-02-31", "reason": "ok"}, "Enter a valid date"),
        ({"last_day": "99999-01-01", "reason": "ok"}, "Enter a valid date"),
        ({"last_day": "2027-01-05", "reason": "ok"}, "must be later than the current one"),
    ]:
        response = support.post(url, {**form, **fields, "token": uuid.uuid4()}, follow=True)
        assert response.status_code == 200 and says in response.content.decode()
    token = uuid.uuid4()
    for _ in range(2):  # a double submission extends once
        done = support.post(
            url,
            {**form, "last_day": "2027-03-01", "reason": "Delayed rollout", "token": token},
            follow=True,
        )
    assert "usable through Mar 1, 2027" in done.content.decode()
    assert LedgerTransaction.objects.filter(kind="extend").count() == 1
    lot.refresh_from_db()
    assert lot.expires_at == local_midnight(organization, dt.date(2027, 3, 2))
    assert Lot.objects.get(pk=other.pk).expires_at == other.expires_at

    organizations = reverse("admin:accounts_organization_changelist")
    grant_form = {"action": "grant_goodwill", "_selected_action": [organization.pk], "apply": "1"}
    for fields, says in [
        ({"quantity": str(2**31), "reason": "x"}, "at most 100,000"),
        ({"quantity": "3", "reason": "r" * 10_000}, "at most 500 characters"),
    ]:
        response = support.post(
            organizations, {**grant_form, **fields, "token": uuid.uuid4()}, follow=True
        )
        assert says in response.content.decode()
    done = support.post(
        organizations,
        {**grant_form, "quantity": "3", "reason": "Sorry for the outage", "token": uuid.uuid4()},
        follow=True,
    )
    assert "3 goodwill credits granted to Acme Corp" in done.content.decode()
    assert selectors.organization_balance(organization=organization).total == 13
    assert selectors.organization_balance(organization=other_organization).total == 7
    both = {
        "action": "grant_goodwill",
        "_selected_action": [organization.pk, other_organization.pk],
    }
    refused = support.post(organizations, both, follow=True)
    assert "Choose one organization at a time." in refused.content.decode()
    assert Organization.objects.count() == 2
    assert admin.site._registry[Lot].has_change_permission(None) is False


def test_staff_without_the_support_permission_cannot_use_the_tools(client, organization):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(email="viewer@credits.test", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=["view_lot", "view_organization"])
    )
    client.force_login(viewer)
    lot = grant(organization, 10, expires_at=timezone.now() + dt.timedelta(days=3))
    page = client.get(reverse("admin:credits_lot_changelist"))
    assert page.status_code == 200 and b"extend_expiry" not in page.content
    forced = client.post(
        reverse("admin:credits_lot_changelist"),
        {"action": "extend_expiry", "_selected_action": [lot.pk], "apply": "1",
         "last_day": "2030-01-01", "reason": "x", "token": uuid.uuid4()},
        follow=True,
    )  # fmt: skip
    assert forced.status_code == 200
    assert Lot.objects.get(pk=lot.pk).expires_at == lot.expires_at
    with pytest.raises(services.InvalidOperation, match="support tools permission"):
        services.goodwill_grant(
            organization=organization, quantity=5, reason="x", actor=viewer,
            idempotency_key=key(),
        )  # fmt: skip
