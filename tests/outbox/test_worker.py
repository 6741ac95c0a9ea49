"""A real Celery worker, through the real Redis broker, sends what the outbox holds, once
each, although every message is also queued a second time and swept on top."""

import json
import time
import uuid
from collections import Counter

import pytest
from celery.result import allow_join_result
from django.db import transaction

from accounts.tasks import ping
from config.celery import app
from outbox import services, tasks
from outbox.models import OutboxMessage
from tests.support import processes

ADDRESSES = [f"p{n}@x.test" for n in range(12)]


@pytest.fixture
def own_queue():
    """Tasks go through Redis (not eagerly) to a queue of this test's own: the test Redis
    database is shared, and another run's worker must not take these tasks (nor this
    worker theirs)."""
    queue = f"outbox-test-{uuid.uuid4().hex[:8]}"
    saved = app.conf.task_always_eager, app.conf.task_default_queue
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_always_eager, app.conf.task_default_queue = saved


def _drained(queue: str) -> bool:
    """The worker (solo: one task at a time, in order) has run everything queued before."""
    for _ in range(3):  # another run clearing the shared Redis database may drop one
        try:
            # allow_join_result: this process is no worker, whatever an eager task left behind.
            with allow_join_result():
                return ping.apply_async(queue=queue).get(timeout=15) == "pong"
        except Exception:  # noqa: S112 - try again; the assertion below reports it
            continue
    return False


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_each_message_once(own_queue, tmp_path):
    log = tmp_path / "mail.jsonl"
    log.touch()
    worker = processes.start(
        processes.celery(
            "worker", "--pool=solo", "--loglevel=INFO", "-Q", own_queue, "-n", f"{own_queue}@%h"
        ),
        tmp_path / "worker.log",
        TEST_EMAIL_BACKEND="tests.outbox.backends.FileLogBackend",
        OUTBOX_TEST_MAIL_LOG=str(log),
    )
    try:
        with transaction.atomic():  # on commit: one send task for the chunk, through Redis
            ids = services.message_enqueue(
                key="real-worker", to=ADDRESSES, subject="A\r\nB", text="Hi", kind="test"
            )
        for message_id in ids:  # each delivered a second time, and the sweep on top
            tasks.send_message.delay(message_id)
        tasks.sweep.delay()
        deadline = time.monotonic() + 60
        while OutboxMessage.objects.filter(sent_at__isnull=True).exists():
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            tasks.sweep.delay()  # what beat does; also covers a task another run's flush lost
            time.sleep(1)
        assert _drained(own_queue), (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        processes.stop(worker)
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert Counter(address for line in sent for address in line["to"]) == Counter(
        dict.fromkeys(ADDRESSES, 1)
    )
    assert {line["subject"] for line in sent} == {"A B"}
    assert set(OutboxMessage.objects.values_list("attempts", flat=True)) == {1}
