"""Support staff work in the Django admin: every model is registered and its pages open."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from accounts.models import Membership, User
from tests.accounts.factories import OrganizationFactory, UserFactory
from tests.support.admin_forms import post_change
from tests.support.admin_lists import (
    assert_opens_filtered_or_not,
    large_table_models,
    open_list,
    whole_table_reads,
)

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"accounts", "credits", "catalog", "training", "billing"}


def _project_models():
    return [m for m in apps.get_models() if m._meta.app_label in PROJECT_APPS]


@pytest.fixture
def support_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_every_project_model_is_registered():
    missing = [m.__name__ for m in _project_models() if not admin.site.is_registered(m)]
    assert missing == []


@pytest.mark.parametrize("model", _project_models(), ids=lambda m: m._meta.label)
def test_support_opens_each_changelist_and_searches(support_client, model, admin):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert support_client.get(url).status_code == 200
    assert support_client.get(url, {"q": "acme"}).status_code == 200


def test_organization_members_cannot_enter_the_admin(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


# --- Who a membership joins is fixed once it exists ----------------------------------------


def test_support_adds_a_membership_and_afterwards_changes_only_its_role(
    support_client, organization, other_organization
):
    person, someone_else = UserFactory(email="new@acme.test"), UserFactory()
    added = support_client.post(
        reverse("admin:accounts_membership_add"),
        {"user": person.pk, "organization": organization.pk, "role": Membership.Role.LEARNER},
    )
    assert added.status_code == 302
    membership = Membership.objects.get(user=person)

    response = post_change(
        support_client,
        membership,
        user=someone_else.pk,
        organization=other_organization.pk,
        role=Membership.Role.ADMIN,
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert (membership.user, membership.organization, membership.role) == (
        person,
        organization,
        Membership.Role.ADMIN,
    )


def test_a_membership_row_on_the_user_page_keeps_its_organization_while_new_rows_are_free(
    support_client, admin, organization, other_organization
):
    initech = OrganizationFactory(name="Initech", slug="initech")
    response = post_change(
        support_client,
        admin,
        **{
            "memberships-0-organization": other_organization.pk,
            "memberships-TOTAL_FORMS": 2,
            "memberships-1-organization": initech.pk,
            "memberships-1-role": Membership.Role.LEARNER,
        },
    )
    assert response.status_code == 302
    assert set(admin.memberships.values_list("organization__slug", "role")) == {
        ("acme", Membership.Role.ADMIN),
        ("initech", Membership.Role.LEARNER),
    }


def test_a_membership_row_on_the_organization_page_keeps_its_user(
    support_client, admin, organization, outsider
):
    response = post_change(
        support_client,
        organization,
        **{"memberships-0-user": outsider.pk, "memberships-0-role": Membership.Role.MANAGER},
    )
    assert response.status_code == 302
    membership = organization.memberships.get()
    assert (membership.user, membership.role) == (admin, Membership.Role.MANAGER)
    assert not outsider.memberships.filter(organization=organization).exists()


# --- Lists that grow with history cost a page ----------------------------------------------


@pytest.mark.parametrize("model", large_table_models("accounts"), ids=lambda m: m.__name__)
def test_support_opens_people_lists_without_reading_whole_tables(
    support_client, organization, admin, manager, outsider, model
):
    assert_opens_filtered_or_not(support_client, model, organization)
    role = {"memberships__role": "admin"} if model is User else {"role": "admin"}
    response, queries = open_list(support_client, model, role)
    assert whole_table_reads(queries, model) == []
    assert len(response.context["cl"].result_list) == 2  # Acme's admin and the outsider


def test_an_organization_leads_to_its_ledger_lists(
    support_client, organization, other_organization
):
    page = support_client.get(reverse("admin:accounts_organization_changelist")).content.decode()
    link = f"/admin/credits/ledgertransaction/?organization={organization.pk}"
    assert link in page
    response = support_client.get(link)
    assert "Acme Corp" in response.content.decode()
    assert all(txn.organization_id == organization.pk for txn in response.context["cl"].result_list)
