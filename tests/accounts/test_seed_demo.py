import pytest
from django.core.management import call_command

from accounts.demo import DEMO_PASSWORD
from accounts.models import Membership, Organization, User
from billing.models import CreditPackage
from catalog.models import Level

pytestmark = pytest.mark.django_db


def _counts():
    return [m.objects.count() for m in (Organization, User, Membership, Level, CreditPackage)]


def test_seed_demo_is_idempotent_and_prints_working_logins(client, capsys):
    call_command("seed_demo")
    first = _counts()
    call_command("seed_demo")
    assert _counts() == first
    out = capsys.readouterr().out
    assert "admin@acme.example" in out and "outsider@globex.example" in out
    assert client.login(username="admin@acme.example", password=DEMO_PASSWORD)


def test_demo_has_two_organizations_with_the_expected_people():
    call_command("seed_demo")
    acme_roles = set(
        Membership.objects.filter(organization__slug="acme").values_list("role", flat=True)
    )
    assert acme_roles == {"admin", "manager", "learner"}
    outsider = User.objects.get(email="outsider@globex.example")
    assert list(outsider.memberships.values_list("organization__slug", flat=True)) == ["globex"]


def test_the_ledger_audits_clean_after_seeding_twice():
    from credits.audit import ledger_audit

    call_command("seed_demo")
    call_command("seed_demo")
    report = ledger_audit()
    assert report.ok, report.violations
    assert report.entries > 0
