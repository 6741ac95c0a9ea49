"""Redis down or hung, on real services: a real gunicorn serving the site, whose cache (the
login counters) and Celery broker are a Redis of this test's own, stopped (connections
refused) or frozen (connections accepted and never answered) by the test. Logging in and
Confirm users still succeed, within seconds, and nothing they did is lost: the plan is
confirmed and charged, and its emails wait in the outbox for the broker to return. The rest
of the suite never sees the outage: its Redis is another server."""

from __future__ import annotations

import time

import pytest

from credits.audit import ledger_audit
from outbox.models import OutboxMessage
from tests.accounts.factories import PASSWORD
from tests.credits.factories import grant
from tests.support.redis_server import RedisServer
from tests.support.web import Browser, WebServer
from tests.training.factories import plan_with
from training.models import Enrollment

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = ["p1@acme.test", "p2@acme.test", "p3@acme.test"]


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def site(own_redis, tmp_path):
    """The site on gunicorn; cache and broker on this test's Redis (its database 15)."""
    web = WebServer(
        tmp_path / "web.log",
        DJANGO_SETTINGS_MODULE="tests.faults.web_settings",
        TEST_REDIS_URL=own_redis.url,
    ).start()
    yield web
    web.stop()


def _confirm_users(browser: Browser, plan) -> tuple[float, str]:
    """Click Confirm users on the plan's page; how long it took and the page it led to."""
    path = f"/training/plans/{plan.pk}/"
    form = browser.get(path)
    assert form.status == 200, form.text[:2000]
    started = time.monotonic()
    answer = browser.post(
        f"{path}confirm/",
        form,
        {"token": form.field("token"), "snapshot": form.field("snapshot")},
    )
    elapsed = time.monotonic() - started
    assert (answer.status, answer.location) == (302, path), answer.text[:2000]
    return elapsed, browser.get(path).text


def _assert_nothing_lost(plan) -> None:
    plan.refresh_from_db()
    assert plan.status == "confirmed"
    assert Enrollment.objects.filter(participant__plan=plan).count() == len(PEOPLE)
    # Every email is written down, unsent, for the sweep once the broker is back.
    rows = OutboxMessage.objects.filter(recipient__in=PEOPLE, sent_at__isnull=True)
    assert sorted(rows.values_list("recipient", flat=True)) == PEOPLE
    report = ledger_audit()
    assert report.ok, report.violations


def _log_in(site: WebServer, admin) -> tuple[float, Browser]:
    browser = Browser(site.base)
    started = time.monotonic()
    answer = browser.log_in(admin.email, PASSWORD)
    elapsed = time.monotonic() - started
    assert (answer.status, answer.location) == (302, "/"), answer.text[:2000]
    assert browser.get("/").status == 200
    return elapsed, browser


def test_with_redis_stopped_login_and_confirm_users_succeed_and_lose_nothing(
    organization, admin, own_redis, site
):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=PEOPLE)
    own_redis.stop()

    login_seconds, browser = _log_in(site, admin)
    confirm_seconds, page = _confirm_users(browser, plan)

    assert "3 people confirmed" in page
    _assert_nothing_lost(plan)
    # Refused at once: no retry loop stands between the click and its answer.
    assert login_seconds < 3 and confirm_seconds < 3, (login_seconds, confirm_seconds)
    log = site.log.read_text()
    assert "the cache is unreachable" in log  # the rate limits' fail-open is on record
    assert "not handed to a worker" in log  # and so is the email left for the sweep


def test_with_redis_not_answering_login_and_confirm_users_still_succeed(
    organization, admin, own_redis, site
):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=PEOPLE)
    own_redis.freeze()
    try:
        login_seconds, browser = _log_in(site, admin)
        confirm_seconds, page = _confirm_users(browser, plan)
    finally:
        own_redis.thaw()

    assert "3 people confirmed" in page
    _assert_nothing_lost(plan)
    # Bounded by the socket time-outs (the cache's 0.5 s per counter, the broker's 5 s for
    # the first enqueue), never the hang of a Redis client without them.
    assert login_seconds < 4 and confirm_seconds < 12, (login_seconds, confirm_seconds)


def test_with_redis_stopped_the_dashboard_says_the_forecast_is_being_prepared(
    organization, admin, own_redis, site
):
    # No stored forecast yet: the page would ask for one, through Redis, which is down.
    grant(organization, 10)
    own_redis.stop()
    _, browser = _log_in(site, admin)
    started = time.monotonic()
    page = browser.get("/")
    seconds = time.monotonic() - started
    assert page.status == 200
    assert "The forecast is being prepared" in page.text
    assert seconds < 3, seconds  # asked once, refused at once, no retry loop
    assert "not requested" in site.log.read_text()
