"""A real Celery worker takes a task from the real Redis broker and answers."""

import pytest

from accounts.tasks import ping
from config.celery import app
from tests.support import processes


@pytest.fixture
def real_broker():
    # Unit tests run tasks eagerly; this one must go through Redis to a separate process.
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


@pytest.mark.django_db(transaction=True)
def test_a_task_runs_in_a_real_worker_through_redis(real_broker, tmp_path):
    log = tmp_path / "worker.log"
    worker = processes.start(
        processes.celery("worker", "--pool=solo", "--loglevel=INFO", "-n", "test-ping@%h"), log
    )
    try:
        result = ping.delay()
        assert result.get(timeout=60) == "pong"
    finally:
        processes.stop(worker)
    assert "Connected to redis://" in log.read_text()
