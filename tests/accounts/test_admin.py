"""Support staff work in the Django admin: every model is registered and its pages open."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from tests.accounts.factories import UserFactory

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
