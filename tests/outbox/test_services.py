"""The outbox on the real PostgreSQL: one row per cause and recipient, sent once whoever
tries, kept and retried while the mail server is down."""

import datetime as dt
from collections import Counter

import pytest
import time_machine
from django.core import mail
from django.db import transaction
from django.utils import timezone

from outbox import services, tasks
from outbox.models import OutboxMessage
from tests.support.threads import run_threads

pytestmark = pytest.mark.django_db


def enqueue(key="cause-1", to=("ana@x.test",), subject="Hello", **kwargs):
    return services.message_enqueue(
        key=key, to=list(to), subject=subject, text="Body\n", kind="test", **kwargs
    )


def sent_per_recipient() -> Counter:
    return Counter(address for message in mail.outbox for address in message.to)


def later(minutes: float):
    """Past any backoff or lease this test set up."""
    return time_machine.travel(timezone.now() + dt.timedelta(minutes=minutes))


def test_a_cause_retried_twice_writes_one_message_per_recipient(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = enqueue(to=["ana@x.test", "ben@x.test", "ANA@x.test"])
        again = enqueue(to=["ana@x.test", "ben@x.test"])
        third = enqueue(to=["ben@x.test"])
    assert len(first) == 2 and again == [] and third == []
    assert OutboxMessage.objects.count() == 2
    assert sent_per_recipient() == Counter({"ana@x.test": 1, "ben@x.test": 1})
    # Each recipient gets a message of their own: nobody sees who else got it.
    assert all(len(message.to) == 1 for message in mail.outbox)


def test_a_rolled_back_cause_writes_nothing_and_sends_nothing(django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        enqueue()
        raise RuntimeError("the change failed")
    assert not OutboxMessage.objects.exists()
    assert mail.outbox == []


def test_while_smtp_fails_messages_keep_their_error_and_the_sweep_sends_each_once_after(
    smtp, django_capture_on_commit_callbacks
):
    smtp.down = True
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(key="a", to=["ana@x.test", "ben@x.test", "cy@x.test"])
    assert mail.outbox == []
    # The first failure says the server is down: the rest of that send is left for later
    # instead of failing one after the other.
    failed = OutboxMessage.objects.exclude(last_error="")
    assert failed.count() == 1
    assert "SMTPServerDisconnected" in failed.get().last_error
    assert not OutboxMessage.objects.filter(sent_at__isnull=False).exists()

    for minutes in (2, 5, 10):  # sweeps during the outage: still nothing sent, nothing lost
        with later(minutes):
            tasks.sweep()
    assert mail.outbox == [] and OutboxMessage.objects.filter(sent_at__isnull=True).count() == 3

    smtp.down = False
    with later(12):  # a minute after the last failed sweep
        assert tasks.sweep() == 3
        assert tasks.sweep() == 0  # and again: nothing twice
    assert sent_per_recipient() == Counter({"ana@x.test": 1, "ben@x.test": 1, "cy@x.test": 1})
    assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()


def test_a_refused_message_waits_out_its_backoff(smtp):
    (message_id,) = enqueue()
    smtp.refused = {"ana@x.test"}
    assert services.message_send(message_id=message_id) == "failed"
    assert services.message_send(message_id=message_id) == "skipped"  # backing off
    with later(1.5):
        assert services.message_send(message_id=message_id) == "failed"
    smtp.refused = set()
    with later(2.5):  # the second refusal doubled the wait
        assert services.messages_send_due().sent == 0
    with later(3.5):
        assert services.messages_send_due().sent == 1
    message = OutboxMessage.objects.get()
    assert message.attempts == 3 and message.sent_at is not None
    assert len(mail.outbox) == 1


def test_a_long_outage_gives_up_nothing_and_everything_goes_a_minute_after_it(smtp):
    enqueue(to=["ana@x.test", "ben@x.test"])
    smtp.down = True
    start = timezone.now()
    for minute in range(1, 2 * services.MAX_ATTEMPTS):  # a day and more of sweeps
        with time_machine.travel(start + dt.timedelta(minutes=minute, seconds=1)):
            assert tasks.sweep() == 0
    assert smtp.calls < 2 * services.MAX_ATTEMPTS  # one try a sweep, not one per message
    assert set(OutboxMessage.objects.values_list("attempts", flat=True)) == {0}
    smtp.down = False
    with time_machine.travel(start + dt.timedelta(minutes=2 * services.MAX_ATTEMPTS + 1)):
        assert tasks.sweep() == 2


def test_a_refused_address_fails_alone(smtp):
    smtp.refused = {"gone@x.test"}
    ids = enqueue(to=["gone@x.test", "ana@x.test", "ben@x.test"])
    result = services.messages_send(message_ids=ids)
    assert (result.sent, result.failed, result.backend_down) == (2, 1, False)
    assert "No such mailbox" in OutboxMessage.objects.get(recipient="gone@x.test").last_error


def test_a_task_delivered_twice_sends_once(django_capture_on_commit_callbacks):
    ids = enqueue(to=["ana@x.test", "ben@x.test"])
    tasks.send_message(ids[0])
    tasks.send_message(ids[0])  # redelivered
    tasks.send_messages(ids)  # and in a chunk
    tasks.sweep()
    assert sent_per_recipient() == Counter({"ana@x.test": 1, "ben@x.test": 1})


def test_a_message_claimed_by_a_sender_that_died_is_sent_once_its_lease_ends():
    (message_id,) = enqueue()
    with transaction.atomic():  # a worker claimed it, then was killed before sending
        services._claim(message_id, force=False)
    assert services.messages_send_due().sent == 0  # leased: maybe being sent right now
    assert tasks.send_message(message_id) == "skipped"
    with later(services.LEASE.total_seconds() / 60 + 0.5):
        assert services.messages_send_due().sent == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_four_senders_at_once_send_each_message_once(monkeypatch):
    monkeypatch.setattr(services, "messages_dispatch", lambda **kwargs: 0)  # the threads send
    ids = enqueue(to=[f"p{n}@x.test" for n in range(40)])
    assert mail.outbox == []
    run_threads(4, lambda n: services.messages_send(message_ids=ids))
    assert sent_per_recipient() == Counter({f"p{n}@x.test": 1 for n in range(40)})
    assert set(OutboxMessage.objects.values_list("attempts", flat=True)) == {1}


def test_a_subject_with_cr_lf_is_one_line_and_the_message_is_valid():
    (message_id,) = enqueue(subject="Training: A\r\nBcc: spy@evil.test\x00\u2028B")
    assert services.message_send(message_id=message_id) == "sent"
    (sent,) = mail.outbox
    assert sent.subject == "Training: A Bcc: spy@evil.test B"
    parsed = sent.message()  # what SMTP would be given: raises on a header with a newline
    assert parsed["Bcc"] is None and sent.bcc == []
    assert parsed["Subject"] == "Training: A Bcc: spy@evil.test B"
    assert parsed["Message-ID"].startswith(f"<outbox.{message_id}.")


def test_html_goes_as_an_alternative():
    (message_id,) = enqueue(html="<p>Body</p>")
    services.message_send(message_id=message_id)
    assert mail.outbox[0].alternatives[0][1] == "text/html"


def test_large_sends_go_in_chunks(monkeypatch, django_capture_on_commit_callbacks):
    chunks = []
    monkeypatch.setattr(tasks.send_messages, "delay", lambda ids: chunks.append(len(ids)))
    monkeypatch.setattr(tasks.send_message, "delay", lambda message_id: chunks.append(1))
    addresses = [f"p{n}@x.test" for n in range(2 * services.CHUNK + 1)]
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(to=addresses)
    assert chunks == [services.CHUNK, services.CHUNK, 1]


def test_a_sweep_sends_a_chunk_and_queues_the_next_while_more_are_due(monkeypatch):
    monkeypatch.setattr(services, "CHUNK", 5)
    enqueue(to=[f"p{n}@x.test" for n in range(12)])
    # The next sweep is queued (run at once here: tasks are eager in tests) until none is due.
    tasks.sweep()
    assert len(mail.outbox) == 12


def test_a_send_past_its_time_budget_leaves_the_rest_due():
    ids = enqueue(to=["ana@x.test", "ben@x.test"])
    result = services.messages_send(message_ids=ids, budget=-1)
    assert (result.sent, result.left) == (0, 2)
    assert services.messages_due().count() == 2


def test_a_message_that_keeps_failing_is_given_up_and_support_can_still_send_it(smtp):
    (message_id,) = enqueue()
    OutboxMessage.objects.update(attempts=services.MAX_ATTEMPTS, last_error="boom")
    assert services.messages_due().count() == 0
    assert services.message_send(message_id=message_id) == "skipped"
    assert services.message_send(message_id=message_id, force=True) == "sent"
    assert services.message_send(message_id=message_id, force=True) == "skipped"  # sent
    assert len(mail.outbox) == 1


def test_the_broker_failing_after_commit_only_logs_and_leaves_the_message_due(
    monkeypatch, caplog, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.send_message, "delay", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        enqueue()
    assert "the sweep will send them" in caplog.text
    assert mail.outbox == [] and services.messages_due().count() == 1
    # The next messages of this process do not wait on a broker that just failed.
    calls = []
    monkeypatch.setattr(tasks.send_message, "delay", lambda *a: calls.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(key="cause-2")
    assert calls == []
    tasks.sweep()
    assert len(mail.outbox) == 2
