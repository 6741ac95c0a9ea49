import pytest
from django.urls import reverse

from accounts.models import Membership
from tests.accounts.factories import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_member_of_two_organizations_switches_between_them(admin_client, admin):
    labs = OrganizationFactory(name="Acme Labs", slug="acme-labs")
    MembershipFactory(user=admin, organization=labs, role=Membership.Role.ADMIN)

    assert b"<h1>Acme Corp</h1>" in admin_client.get(reverse("dashboard")).content
    response = admin_client.post(reverse("switch_organization", args=["acme-labs"]), follow=True)
    assert b"You are now working in Acme Labs" in response.content
    assert b"<h1>Acme Labs</h1>" in response.content
    # The choice sticks for the following requests.
    assert b"<h1>Acme Labs</h1>" in admin_client.get(reverse("dashboard")).content


def test_switching_sends_back_only_to_a_local_page(admin_client, admin):
    response = admin_client.post(
        reverse("switch_organization", args=["acme"]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("dashboard")


def test_navigation_follows_the_role(admin_client, learner_client):
    admin_page = admin_client.get(reverse("dashboard")).content.decode()
    learner_page = learner_client.get(reverse("dashboard")).content.decode()
    assert "You are admin here." in admin_page
    assert "You are learner here." in learner_page
    assert 'href="/"' in learner_page


def test_a_user_without_organization_is_told_what_to_do(client):
    user = UserFactory()
    client.force_login(user)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 403
    assert b"not a member of any organization" in response.content


def test_times_are_shown_in_the_organization_zone_unless_the_user_has_one(admin_client, admin):
    assert b"shown in America/New_York" in admin_client.get(reverse("dashboard")).content
    admin.time_zone = "Asia/Tokyo"
    admin.save()
    assert b"shown in Asia/Tokyo" in admin_client.get(reverse("dashboard")).content


def test_unknown_pages_get_the_friendly_404(admin_client):
    response = admin_client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"Page not found" in response.content
