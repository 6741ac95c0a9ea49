"""Walk every URL pattern of the project and prove that an admin of another organization
gets 404 for each object of the first.

Every pattern that takes parameters must appear in OBJECT_URLS (tests/support/urls.py: how to
point it at an object of `organization`, and with which method) or in PUBLIC_PARAMETER_URLS
(with the reason it is not scoped to an organization). A new URL that is in neither fails
this test.
"""

import pytest
from django.urls import reverse

from tests.support.urls import OBJECT_URLS, PUBLIC_PARAMETER_URLS, parameterised_url_names

pytestmark = pytest.mark.django_db


def test_every_parameterised_url_is_covered():
    uncovered = [
        name
        for name in parameterised_url_names()
        if name not in OBJECT_URLS and name not in PUBLIC_PARAMETER_URLS
    ]
    assert uncovered == [], f"add these URLs to OBJECT_URLS in {__file__}: {uncovered}"


@pytest.mark.parametrize("url_name", sorted(OBJECT_URLS))
def test_outsider_gets_404_for_objects_of_another_organization(
    url_name, organization, admin, outsider_client, settings
):
    method, build_kwargs, overrides = OBJECT_URLS[url_name]
    for name, value in overrides.items():
        setattr(settings, name, value)
    url = reverse(url_name, kwargs=build_kwargs(organization))
    response = getattr(outsider_client, method)(url)
    assert response.status_code == 404, f"{method.upper()} {url} -> {response.status_code}"


@pytest.mark.parametrize("url_name", sorted(OBJECT_URLS))
def test_the_member_reaches_the_same_objects(url_name, organization, admin_client, settings):
    # The other half of the proof: the 404 above is about the outsider, not a broken URL.
    method, build_kwargs, overrides = OBJECT_URLS[url_name]
    for name, value in overrides.items():
        setattr(settings, name, value)
    url = reverse(url_name, kwargs=build_kwargs(organization))
    response = getattr(admin_client, method)(url)
    assert response.status_code < 400, f"{method.upper()} {url} -> {response.status_code}"
