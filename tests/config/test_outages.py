"""Outages degrade cleanly, in-process: a database error anywhere in a request is a 503 "try
again in a moment" page with Retry-After; a Redis that accepts connections but never answers
costs a login about a second, not a hang; persistent connections are health-checked; the
periodic tasks' follow-ups never raise for a broker that is gone. (tests/faults/ does the
same against real servers that are stopped and started.)"""

import logging
import socket
import time

import pytest
from django.conf import settings
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper
from django.test import Client, override_settings
from django.urls import reverse
from kombu.exceptions import OperationalError as BrokerError

from credits import tasks
from tests.accounts.factories import PASSWORD
from tests.config.test_settings import PRODUCTION_ENV, _manage
from tests.credits.factories import grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def database_down(monkeypatch):
    """From now on every statement fails as it does while PostgreSQL restarts."""

    def refuse(self, *args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    def down():
        monkeypatch.setattr(CursorWrapper, "execute", refuse)

    return down


def _browser_of(user) -> Client:
    client = Client(raise_request_exception=False)  # as a real server: the handler answers
    client.force_login(user)
    return client


def _is_back_in_a_moment(response) -> bool:
    page = response.content.decode()
    return (
        response.status_code == 503
        and response["Retry-After"] == "5"
        and "try again in a moment" in page
    )


def test_the_database_failing_in_a_middleware_is_the_503_page(admin, database_down):
    browser = _browser_of(admin)
    database_down()  # the session itself cannot be read
    assert _is_back_in_a_moment(browser.get(reverse("dashboard")))


def test_the_database_failing_in_a_view_is_the_503_page(admin, monkeypatch):
    browser = _browser_of(admin)

    def refuse(**kwargs):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr("accounts.views.credit_selectors.organization_balance", refuse)
    assert _is_back_in_a_moment(browser.get(reverse("dashboard")))


def test_any_other_error_is_still_the_500_page(admin, monkeypatch):
    browser = _browser_of(admin)

    def fails(**kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("accounts.views.credit_selectors.organization_balance", fails)
    response = browser.get(reverse("dashboard"))
    assert response.status_code == 500
    assert "Retry-After" not in response
    assert "Something went wrong on our side" in response.content.decode()


def test_persistent_connections_are_health_checked_in_every_environment():
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True
    result = _manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'])",
        **PRODUCTION_ENV,
    )
    assert result.stdout.split()[-2:] == ["60", "True"], result.stdout + result.stderr


@pytest.fixture
def hung_redis():
    """A port whose connections the kernel accepts and nobody ever answers: a Redis that is
    stopped (SIGSTOP), swapping or behind a dead link, not one that refuses."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    location = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    cache = {**settings.CACHES["default"], "LOCATION": location}
    with override_settings(CACHES={"default": cache}):
        yield
    server.close()


def test_with_redis_not_answering_the_login_still_works_within_a_second_or_so(
    client, admin, hung_redis, caplog
):
    started = time.monotonic()
    response = client.post(reverse("login"), {"username": admin.email, "password": PASSWORD})
    elapsed = time.monotonic() - started
    assert response.status_code == 302
    assert client.session.get("_auth_user_id") == str(admin.pk)
    # Two counters, each given up after the cache's time-out (0.5 s), not redis-py's 5 s.
    assert elapsed < 4, elapsed
    assert any("cache is unreachable" in r.getMessage() for r in caplog.records)


def test_an_expiry_run_that_reaches_its_deadline_queues_its_continuation(
    organization, settings, monkeypatch
):
    grant(organization, 5, days_ago=400)
    queued = []
    monkeypatch.setattr(tasks, "_queue", lambda task, *args: queued.append(task.name) or True)
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0  # a budget spent before the first batch
    assert tasks.expire_lots() == 0
    assert queued == ["credits.tasks.expire_lots"]

    settings.CELERY_TASK_SOFT_TIME_LIMIT = 240
    assert tasks.expire_lots() == 1
    assert queued == ["credits.tasks.expire_lots"]  # done: nothing more queued


def test_a_broker_that_is_gone_is_logged_by_the_periodic_fan_out_not_raised(
    organization, monkeypatch, caplog
):
    grant(organization, 5)

    def broker_gone(*args, **kwargs):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.balance_alert, "delay", broker_gone)
    with caplog.at_level(logging.WARNING, logger="credits.tasks"):
        assert tasks.balance_alerts() == 0
    assert any(
        "credits.tasks.balance_alert" in r.getMessage() and "not queued" in r.getMessage()
        for r in caplog.records
    )
