"""One error boundary: a refusal that no view handled is a message and a way back, for
plain and htmx requests alike, never a 500."""

import pytest
from django.test import override_settings

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.config.refusal_urls")]


def test_a_refused_post_goes_back_to_the_page_it_came_from_with_the_message(admin_client):
    response = admin_client.post("/refuse/", headers={"Referer": "http://testserver/catalog/"})
    assert response.status_code == 302
    assert response["Location"] == "http://testserver/catalog/"
    page = admin_client.get("/catalog/").content.decode()
    assert "This plan is closed; create a new one." in page


def test_a_refusal_never_sends_the_user_to_another_site(admin_client):
    response = admin_client.post("/refuse/", headers={"Referer": "https://evil.example/"})
    assert response["Location"] == "/"


def test_an_htmx_refusal_is_swapped_into_the_message_region(admin_client):
    response = admin_client.post("/refuse/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#messages"
    assert "This plan is closed" in response.content.decode()


@override_settings(DEBUG=False)
def test_the_ledgers_refusals_read_with_thousands_separators(admin_client):
    response = admin_client.post("/short/", headers={"HX-Request": "true"})
    assert "1,234,567 more needed" in response.content.decode()


def test_a_refused_page_never_redirects_to_itself(admin_client):
    for referer in ({}, {"Referer": "http://testserver/refuse/"}):
        response = admin_client.get("/refuse/", headers=referer)
        assert response["Location"] == "/"
