"""Fixtures shared by every test: the named people of two organizations.

`organization` is the one under test; `outsider` is an admin of `other_organization` and must
never see anything of the first.
"""

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import Membership
from tests.accounts.factories import OrganizationFactory, member


@pytest.fixture(autouse=True)
def _clean_cache():
    # Rate-limit counters and the like live in Redis: one test's must not leak into the next.
    cache.clear()
    yield


@pytest.fixture
def organization(db):
    return OrganizationFactory(name="Acme Corp", slug="acme", time_zone="America/New_York")


@pytest.fixture
def other_organization(db):
    return OrganizationFactory(name="Globex", slug="globex", time_zone="Europe/London")


@pytest.fixture
def admin(organization):
    return member(organization, Membership.Role.ADMIN, email="admin@acme.test")


@pytest.fixture
def manager(organization):
    return member(organization, Membership.Role.MANAGER, email="manager@acme.test")


@pytest.fixture
def learner(organization):
    return member(organization, Membership.Role.LEARNER, email="learner@acme.test")


@pytest.fixture
def outsider(other_organization):
    return member(other_organization, Membership.Role.ADMIN, email="outsider@globex.test")


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin):
    return _client_for(admin)


@pytest.fixture
def manager_client(manager):
    return _client_for(manager)


@pytest.fixture
def learner_client(learner):
    return _client_for(learner)


@pytest.fixture
def outsider_client(outsider):
    return _client_for(outsider)
