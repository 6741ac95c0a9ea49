"""Email through outages, on real services: a real SMTP server (tests/support/smtp.py), a
Redis of these tests' own (a redis-server on a spare port, stopped and started by the test)
as the Celery broker, and real Celery workers. Whatever fails, every email and alert the
product wrote is delivered, and none twice: counted at the SMTP server, by recipient and
Message-ID.

The rest of the suite never sees these outages: the broker, the mail server and the workers
are this module's own, and the test Redis database shared by other runs is not used as a
broker here (another run's cache.clear() would flush its queues).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from config.celery import app
from credits import alerts
from outbox import services, tasks
from outbox.models import OutboxMessage
from tests.credits.factories import grant
from tests.support import processes
from tests.support.redis_server import RedisServer
from tests.support.smtp import SMTP_BACKEND, SmtpServer
from tests.training.factories import confirm_form, plan_with
from training.plans.services import plan_confirm

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = ["p1@acme.test", "p2@acme.test", "p3@acme.test"]
# What each outage looks like on the rows it left unsent.
ERRORS = {
    "MAIL": "SMTPSenderRefused",
    "RCPT": "SMTPRecipientsRefused",
    "stopped": "ConnectionRefusedError",
}


def _wait(condition: Callable[[], bool], timeout: float, message: str | Callable[[], str]):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message)
        time.sleep(0.1)


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def broker(tmp_path, monkeypatch):
    """This test's own Redis as the broker of this process (tasks really queued, not eager)
    and of the workers it starts."""
    server = RedisServer(tmp_path)
    server.start()
    saved = app.conf.broker_url, app.conf.task_always_eager
    app.conf.broker_url = server.url
    app.conf.task_always_eager = False
    app._pool, app.amqp._producer_pool = None, None
    monkeypatch.setattr(services, "_broker_paused_until", 0.0)
    yield server
    app.conf.broker_url, app.conf.task_always_eager = saved
    app._pool, app.amqp._producer_pool = None, None
    server.stop()


@pytest.fixture
def workers(broker, smtp, tmp_path):
    """start(**env) starts a Celery worker sending through the test SMTP server."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(*, pool: str = "prefork", **env: str) -> subprocess.Popen:
        log = tmp_path / f"worker{len(started)}.log"
        name = f"email-faults-{uuid.uuid4().hex[:8]}@%h"
        args = ["worker", f"--pool={pool}", "--loglevel=INFO", "-n", name, "--without-gossip"]
        if pool == "prefork":
            args.append("--concurrency=2")
        process = processes.start(
            processes.celery(*args),
            log,
            TEST_REDIS_URL=broker.url,
            EMAIL_URL=smtp.url,
            TEST_EMAIL_BACKEND=SMTP_BACKEND,
            EMAIL_TIMEOUT="30",
            **env,
        )
        started.append((process, log))
        return process

    start.logs = lambda: "\n".join(log.read_text()[-3000:] for _, log in started)
    yield start
    for process, _ in started:
        if process.poll() is None:
            processes.stop(process)


def _rows():
    return list(OutboxMessage.objects.order_by("pk"))


def _minutes_pass() -> None:
    """What waiting does: backoffs run out (a server that was down is tried again at the
    next sweep, a minute later) and so do the leases of senders that died."""
    past = timezone.now() - dt.timedelta(seconds=1)
    OutboxMessage.objects.filter(sent_at__isnull=True).update(next_attempt_at=past)
    OutboxMessage.objects.filter(sent_at__isnull=True, claimed_until__isnull=False).update(
        claimed_until=past
    )


def _sweep_until_all_sent(logs: Callable[[], str], timeout: float = 30) -> None:
    """Beat's part, faster: sweeps queued through the broker until nothing is unsent."""
    deadline = time.monotonic() + timeout
    while OutboxMessage.objects.filter(sent_at__isnull=True).exists():
        assert time.monotonic() < deadline, logs()
        # A broker just back may refuse one; the next goes.
        with contextlib.suppress(Exception):
            tasks.sweep.delay()
        time.sleep(0.5)


def _assert_each_sent_once(smtp: SmtpServer, expected: list[str]) -> None:
    rows = _rows()
    assert all(row.sent_at for row in rows)
    assert Counter(smtp.recipients()) == Counter(dict.fromkeys(expected, 1))
    ids = [message.message_id for message in smtp.received]
    assert len(ids) == len(set(ids)) == len(rows), ids
    assert set(ids) == {services._message_id(row) for row in rows}
    assert mail.outbox == []  # this process sent nothing: the workers did


def _confirm_and_alert(organization, admin) -> list[str]:
    """Confirm users for three people, which takes the balance below its threshold, and the
    hourly balance check's alert: four emails, written in two transactions."""
    organization.low_balance_threshold = 10
    organization.save(update_fields=["low_balance_threshold"])
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=PEOPLE)
    assert plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4())).people == 3
    assert alerts.balance_check(organization_id=organization.pk) == ["low_balance"]
    return [*PEOPLE, admin.email]


@pytest.mark.parametrize("refusal", ["MAIL", "RCPT", "stopped"])
def test_smtp_refusing_loses_nothing_and_sends_each_once_after_it_recovers(
    refusal, organization, admin, smtp, workers
):
    if refusal == "stopped":
        smtp.stop()
    else:
        smtp.refuse = refusal  # 451 to every MAIL FROM, or to every RCPT TO
    workers()
    expected = _confirm_and_alert(organization, admin)

    # The worker tried (one task per transaction) and the server took nothing.
    def tried() -> bool:
        rows = _rows()
        if refusal == "RCPT":  # a refused address fails that message only: each is tried
            return all(row.last_error for row in rows)
        # A server that is down stops a task at its first message: the rest wait.
        return sum(bool(row.last_error) for row in rows) >= 2

    _wait(tried, 20, workers.logs)
    rows = _rows()
    assert len(rows) == 4 and not any(row.sent_at for row in rows)  # nothing lost
    errors = {row.last_error.split(":")[0] for row in rows if row.last_error}
    assert errors == {ERRORS[refusal]}
    assert smtp.received == []

    if refusal == "stopped":
        smtp.start()
    else:
        smtp.refuse = None
    _minutes_pass()
    _sweep_until_all_sent(workers.logs)
    time.sleep(1)  # sweeps still queued find nothing more to send
    _assert_each_sent_once(smtp, expected)
    [alert] = [m for m in smtp.received if m.recipients == (admin.email,)]
    assert "7 credits left" in alert.subject


def test_redis_stopped_confirm_users_succeeds_and_a_worker_sends_after_it_returns(
    organization, admin, admin_client, smtp, broker, workers, settings
):
    organization.low_balance_threshold = 0
    organization.save(update_fields=["low_balance_threshold"])
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=PEOPLE)
    workers()
    # The cache (rate limits and the like) is on the Redis that stops too.
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": broker.url}}

    broker.stop()
    started = time.monotonic()
    response = admin_client.post(reverse("training:confirm", args=[plan.pk]), confirm_form(plan))
    assert response.status_code == 302, response.content[:2000]
    assert time.monotonic() - started < 5
    plan.refresh_from_db()
    assert plan.status == "confirmed"
    rows = _rows()
    assert sorted(row.recipient for row in rows) == PEOPLE
    assert not any(row.sent_at for row in rows)

    broker.start()  # empty: whatever was queued before is gone; the outbox was not
    services._broker_paused_until = 0.0  # the 30 s pause after a refusal: passed, say
    _sweep_until_all_sent(workers.logs, timeout=40)
    time.sleep(1)
    _assert_each_sent_once(smtp, PEOPLE)


def test_a_worker_killed_mid_send_sends_nothing_twice(organization, admin, smtp, workers):
    smtp.stall_next()  # the first message sent blocks in DATA
    first = workers(pool="solo")
    people = [*PEOPLE, "p4@acme.test"]
    organization.low_balance_threshold = 0
    organization.save(update_fields=["low_balance_threshold"])
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=people)
    plan_confirm(plan=plan, user=admin, token=str(uuid.uuid4()))  # one task for the four

    assert smtp.stalled.wait(20), workers.logs()
    stalled_at = time.monotonic()
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    claimed = [row for row in _rows() if row.claimed_until]
    assert len(claimed) == 1 and not any(row.sent_at for row in _rows())
    smtp.release()
    time.sleep(0.3)
    assert smtp.received == []  # the connection died with the worker, before the 250

    # The killed task is still unacknowledged in Redis. A new worker whose visibility time-out
    # (twice CELERY_TASK_TIME_LIMIT) has passed hands it back to the queue and runs it: the
    # message it died on is still claimed by it and skipped; the others go.
    time.sleep(max(0.0, stalled_at + 2.5 - time.monotonic()))
    workers(pool="solo", CELERY_TASK_TIME_LIMIT="1", CELERY_TASK_SOFT_TIME_LIMIT="1")
    _wait(
        lambda: OutboxMessage.objects.filter(sent_at__isnull=False).count() == 3,
        30,
        workers.logs,
    )
    assert not OutboxMessage.objects.get(pk=claimed[0].pk).sent_at

    # Its lease (two minutes) runs out; the sweep sends it.
    _minutes_pass()
    _sweep_until_all_sent(workers.logs)
    tasks.send_messages.delay([row.pk for row in _rows()])  # and a redelivery on top
    time.sleep(1.5)
    _assert_each_sent_once(smtp, people)
