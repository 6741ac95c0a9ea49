"""A real Celery beat schedules a task, a real worker runs it through Redis, and it changes
the database: a lot past its 365 days is expired without anyone asking."""

import time

import pytest

from credits.models import Lot
from tests.credits.factories import grant
from tests.support import processes


@pytest.mark.django_db(transaction=True)
def test_beat_and_worker_expire_a_lot_on_schedule(organization, tmp_path):
    lot = grant(organization, 5, days_ago=400)
    worker = processes.start(
        processes.celery("worker", "--pool=solo", "--loglevel=INFO", "-n", "test-beat@%h"),
        tmp_path / "worker.log",
        CELERY_BEAT_FAST="1",
    )
    beat = processes.start(
        processes.celery("beat", "--loglevel=INFO", "--schedule", str(tmp_path / "beat-schedule")),
        tmp_path / "beat.log",
        CELERY_BEAT_FAST="1",
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lot.refresh_from_db()
            if lot.expired_at is not None:
                break
            time.sleep(0.5)
    finally:
        processes.stop(beat)
        processes.stop(worker)
    assert lot.expired_at is not None, (tmp_path / "worker.log").read_text()[-2000:]
    assert "Sending due task expire-lots-fast" in (tmp_path / "beat.log").read_text()
    assert Lot.objects.get(pk=lot.pk).holdings.get().quantity == 0
