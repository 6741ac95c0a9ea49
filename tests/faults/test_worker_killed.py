"""A Celery worker killed with SIGKILL in the middle of the expiry, on real services: a Redis
of this test's own as the broker, real workers, the test database. The task was taken but
never acknowledged (acks_late), so Redis hands it to the next worker once the visibility
time-out has passed; that run carries on from the batches the dead one committed, and every
lot expires exactly once."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import pytest

from config.celery import app
from credits import services
from credits.tasks import expire_lots
from tests.credits.bulk import due_lots
from tests.credits.test_expiry_batches import assert_audit_clean, assert_each_due_lot_expired_once
from tests.support import processes
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

LOTS = 20_000
# Small batches make the run last a few seconds, so that the kill lands in its middle.
BATCH = "50"
# The second worker's limits: its visibility time-out (twice the hard limit, base.py) is
# then 4 s instead of 10 minutes.
LIMIT = 2


@pytest.fixture
def broker(tmp_path):
    """This test's own Redis as the broker of this process and of the workers it starts."""
    server = RedisServer(tmp_path).start()
    saved = app.conf.broker_url, app.conf.task_always_eager
    app.conf.broker_url, app.conf.task_always_eager = server.url, False
    app._pool, app.amqp._producer_pool = None, None
    yield server
    app.conf.broker_url, app.conf.task_always_eager = saved
    app._pool, app.amqp._producer_pool = None, None
    server.stop()


@pytest.fixture
def workers(broker, tmp_path):
    started = []

    def start(**env: str):
        log = tmp_path / f"worker{len(started)}.log"
        name = f"expiry-faults-{uuid.uuid4().hex[:8]}@%h"
        args = ["worker", "--pool=solo", "--loglevel=INFO", "-n", name, "--without-gossip"]
        process = processes.start(
            processes.celery(*args, "--without-mingle", "--without-heartbeat"),
            log,
            TEST_REDIS_URL=broker.url,
            CREDITS_EXPIRY_BATCH_LOTS=BATCH,
            **env,
        )
        started.append((process, log))
        return process, log

    yield start
    for process, _ in started:
        if process.poll() is None:
            processes.stop(process)


def _expired() -> int:
    from credits.models import Lot

    return Lot.objects.filter(expired_at__isnull=False).count()


def _wait(condition, timeout: float, logs) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, logs()
        time.sleep(0.01)


def test_an_expiry_killed_with_its_worker_is_redelivered_and_expires_each_lot_once(
    organization, workers
):
    pool = services.pool_account(organization=organization)
    due_lots(pool, LOTS)
    first, first_log = workers()
    queued = expire_lots.delay()

    # Killed once its first batches have committed, long before the last.
    _wait(lambda: _expired() > 0, 60, first_log.read_text)
    taken_at = time.monotonic()
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    done_by_the_dead = _expired()
    assert 0 < done_by_the_dead < LOTS
    assert_audit_clean()  # what it committed is whole; its last batch left no trace

    # A worker started after the visibility time-out finds the task unacknowledged and runs
    # it again: the lots it expires are only those still due.
    time.sleep(max(0.0, taken_at + 2 * LIMIT + 0.5 - time.monotonic()))
    _, second_log = workers(
        CELERY_TASK_TIME_LIMIT=str(LIMIT), CELERY_TASK_SOFT_TIME_LIMIT=str(LIMIT)
    )
    _wait(lambda: _expired() == LOTS, 60, second_log.read_text)

    # The same message, redelivered (not queued anew), and its follow-ups if it ran out of
    # its two seconds.
    received = re.findall(r"credits\.tasks\.expire_lots\[([0-9a-f-]+)\] received",
                          second_log.read_text())  # fmt: skip
    assert received[0] == queued.id, second_log.read_text()
    assert_each_due_lot_expired_once(LOTS)
    assert services.pool_account(organization=organization).balance == 0
    assert_audit_clean()
