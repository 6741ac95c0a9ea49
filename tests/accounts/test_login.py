import pytest
from django.test import override_settings
from django.urls import reverse

from tests.accounts.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_login_by_email_in_any_case_lands_on_the_dashboard(client, admin):
    response = client.post(
        reverse("login"), {"username": "ADMIN@Acme.test", "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert b"Acme Corp" in response.content


def test_wrong_password_is_refused_with_a_message(client, admin):
    response = client.post(reverse("login"), {"username": admin.email, "password": "nope"})
    assert response.status_code == 200
    assert b"do not match an account" in response.content
    assert "_auth_user_id" not in client.session


def test_pages_need_a_login(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@override_settings(LOGIN_RATE_PER_EMAIL="3/m")
def test_repeated_attempts_on_one_email_are_refused_even_with_the_right_password(client, admin):
    for _ in range(3):
        client.post(reverse("login"), {"username": admin.email, "password": "guess"})
    response = client.post(reverse("login"), {"username": admin.email, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many log-in attempts" in response.content
    assert "_auth_user_id" not in client.session


@override_settings(LOGIN_RATE_PER_IP="4/m")
def test_one_address_trying_many_emails_is_refused(client, admin):
    for n in range(4):
        client.post(reverse("login"), {"username": f"x{n}@acme.test", "password": "guess"})
    response = client.post(reverse("login"), {"username": admin.email, "password": PASSWORD})
    assert response.status_code == 429


def test_logout_is_a_post_and_ends_the_session(admin_client):
    assert admin_client.get(reverse("logout")).status_code == 405
    response = admin_client.post(reverse("logout"), follow=True)
    assert b"You are logged out." in response.content
    assert admin_client.get(reverse("dashboard")).status_code == 302
