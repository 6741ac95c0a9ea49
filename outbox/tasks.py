"""Thin tasks: ids in, a service call. Each is safe to run twice or at once (a redelivery after
a worker died, a retry, the sweep racing a send task): a message is claimed before it is
sent and never sent once marked sent. Results are not stored (nobody waits for them), which
also keeps queuing to a single broker request."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services

log = logging.getLogger(__name__)

# A database that is briefly away: a few quick retries; the sweep covers anything beyond.
_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 5,
    "retry_backoff_max": 60,
    "max_retries": 3,
}


@shared_task(acks_late=True, ignore_result=True, **_RETRY)
def send_message(message_id: int) -> str:
    return services.message_send(message_id=message_id)


@shared_task(acks_late=True, ignore_result=True, **_RETRY)
def send_messages(message_ids: list[int]) -> int:
    return services.messages_send(message_ids=message_ids).sent


@shared_task(acks_late=True, ignore_result=True)
def sweep() -> int:
    """Beat, every minute: what is still unsent and due, CHUNK at a time. A full chunk sent
    queues the next sweep at once, so a backlog (after an outage) drains at the backend's
    pace rather than CHUNK a minute."""
    result = services.messages_send_due()
    if result.more:
        try:
            sweep.delay()
        except Exception as error:  # the next beat tick carries on
            log.warning("outbox: could not queue the next sweep: %s", error)
    return result.sent
