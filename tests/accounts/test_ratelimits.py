"""Attempt counters on the three forms that take a password or an email address: the site
login, the Django admin login and password reset (accounts/ratelimits.py)."""

import datetime as dt
import logging
import socket

import pytest
import time_machine
from django.core import mail
from django.test import override_settings
from django.urls import reverse

from tests.accounts.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

# The counters use fixed windows; freezing the clock keeps every attempt of a test in one.
FROZEN = dt.datetime(2026, 5, 4, 10, 0, 30, tzinfo=dt.UTC)
RESET_DONE = reverse("password_reset_done")


@pytest.fixture
def staff():
    return UserFactory(email="support@cac.test", is_staff=True, is_superuser=True)


def _logged_in(client, user) -> bool:
    return client.session.get("_auth_user_id") == str(user.pk)


def test_thirty_wrong_admin_passwords_then_the_right_one_is_refused(client, staff):
    with time_machine.travel(FROZEN, tick=False):
        for _ in range(30):
            client.post(reverse("admin:login"), {"username": staff.email, "password": "guess"})
        response = client.post(
            reverse("admin:login"), {"username": staff.email, "password": PASSWORD}
        )
    assert response.status_code == 429
    assert b"Too many log-in attempts" in response.content
    assert not _logged_in(client, staff)


@override_settings(LOGIN_RATE_PER_IP="1000/m")  # only the per-account counter is under test
@pytest.mark.parametrize("login", ["login", "admin:login"])
def test_other_spellings_of_the_same_address_share_its_counter(client, staff, login):
    # The login form folds fullwidth letters (NFKC) and ignores case: such a spelling
    # reaches the same account, so it must not open a fresh budget of guesses.
    spellings = [
        "support@cac.test",
        "SUPPORT@cac.test",
        "\uff53upport@cac.test",
        " Support@CAC.test ",
    ]
    with time_machine.travel(FROZEN, tick=False):
        for n in range(30):
            client.post(
                reverse(login), {"username": spellings[n % len(spellings)], "password": "guess"}
            )
        response = client.post(
            reverse(login), {"username": "\uff53\uff55pport@cac.test", "password": PASSWORD}
        )
    assert response.status_code == 429
    assert not _logged_in(client, staff)


@override_settings(LOGIN_RATE_PER_IP="4/m")
def test_one_address_trying_many_emails_on_the_admin_login_is_refused(client, staff):
    with time_machine.travel(FROZEN, tick=False):
        for n in range(4):
            client.post(reverse("admin:login"), {"username": f"x{n}@cac.test", "password": "x"})
        response = client.post(
            reverse("admin:login"), {"username": staff.email, "password": PASSWORD}
        )
    assert response.status_code == 429
    assert not _logged_in(client, staff)


@override_settings(LOGIN_RATE_PER_EMAIL="3/m")
def test_the_site_login_and_the_admin_login_count_against_the_same_account(client, staff):
    # Same passwords behind both forms: moving to the other one is no fresh start.
    with time_machine.travel(FROZEN, tick=False):
        for _ in range(3):
            client.post(reverse("login"), {"username": staff.email, "password": "guess"})
        response = client.post(
            reverse("admin:login"), {"username": staff.email.upper(), "password": PASSWORD}
        )
    assert response.status_code == 429
    assert not _logged_in(client, staff)


@override_settings(PASSWORD_RESET_RATE_PER_EMAIL="3/h")
def test_password_reset_stops_mailing_one_inbox_after_the_limit(client, admin):
    with time_machine.travel(FROZEN, tick=False):
        answers = [
            client.post(reverse("password_reset"), {"email": email})
            for email in ["admin@acme.test", "ADMIN@acme.test", " Admin@Acme.test "] * 2
        ]
    assert len(mail.outbox) == 3
    # Past the limit the page says what it always says: no hint that mail stopped.
    assert {(a.status_code, a["Location"]) for a in answers} == {(302, RESET_DONE)}


@override_settings(PASSWORD_RESET_RATE_PER_IP="2/h")
def test_a_limited_reset_answers_alike_for_known_and_unknown_accounts(client, admin):
    with time_machine.travel(FROZEN, tick=False):
        for n in range(2):
            client.post(reverse("password_reset"), {"email": f"nobody{n}@acme.test"})
        known = client.post(reverse("password_reset"), {"email": admin.email})
        unknown = client.post(reverse("password_reset"), {"email": "nobody9@acme.test"})
    assert mail.outbox == []
    assert (known.status_code, known["Location"]) == (302, RESET_DONE)
    assert (unknown.status_code, unknown["Location"]) == (302, RESET_DONE)


def _closed_port() -> int:
    # A port the system just handed out and took back: nothing listens on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_down():
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
        }
    }
    with override_settings(CACHES=caches):
        yield


def _warned(caplog) -> bool:
    return any(
        r.levelno == logging.WARNING and "cache is unreachable" in r.getMessage()
        for r in caplog.records
    )


def test_with_redis_down_the_site_login_still_works_and_warns(client, admin, redis_down, caplog):
    response = client.post(reverse("login"), {"username": admin.email, "password": PASSWORD})
    assert response.status_code == 302
    assert _logged_in(client, admin)
    assert _warned(caplog)


def test_with_redis_down_the_admin_login_still_works_and_warns(client, staff, redis_down, caplog):
    response = client.post(reverse("admin:login"), {"username": staff.email, "password": PASSWORD})
    assert response.status_code == 302
    assert _logged_in(client, staff)
    assert _warned(caplog)


def test_with_redis_down_password_reset_still_mails_and_warns(client, admin, redis_down, caplog):
    response = client.post(reverse("password_reset"), {"email": admin.email})
    assert (response.status_code, response["Location"]) == (302, RESET_DONE)
    assert len(mail.outbox) == 1
    assert _warned(caplog)
