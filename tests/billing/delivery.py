"""Post Stripe events to the webhook as Stripe does (JSON signed with the SDK's own helper),
and let the processing the webhook queues after its commit run as it does in production.

The webhook stores the event and queues its task with `transaction.on_commit`; Celery runs
eagerly in tests. In a test inside a transaction (`django_db`) nothing commits, so the
callbacks are captured and run once the response is back; in a `transaction=True` test
they ran at the commit already and there is nothing left to capture.
"""

import json
import time

from django.test import Client, TestCase
from django.urls import reverse

URL = reverse("billing:stripe_webhook")


def post_event(events, event: dict, *, client=None, timestamp=None, secret=None):
    payload = json.dumps(event)
    signature = events.sign(payload, timestamp=timestamp or int(time.time()), secret=secret)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return (client or Client()).post(
            URL, payload, content_type="application/json", headers={"Stripe-Signature": signature}
        )


def deliver(
    events, type_, obj, *, client=None, event_id=None, created=None, timestamp=None, secret=None
):
    event = events.event(type_, obj, created=created or int(time.time()), event_id=event_id)
    return post_event(events, event, client=client, timestamp=timestamp, secret=secret)
