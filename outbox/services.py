"""The outbox: the one way the product sends email (Django's own password reset aside).

A change that should tell someone writes the message here, inside the transaction of that
change (`message_enqueue`, `messages_enqueue`): if the change rolls back nothing is sent, and
once it commits the message exists whatever happens next. After the commit a Celery task is
asked to send it at once; if the broker cannot take that request, a warning is logged and the
minute sweep (`messages_send_due`) sends the message later. Nothing here raises into the
request that caused the message once its transaction has committed.

Sending claims the row with a short lease in its own committed transaction, talks to the
email backend with no database lock held, then marks the row sent in a second short
transaction. A backend error is recorded on the row (`attempts`, `last_error`) and the
message is tried again later with backoff. A message marked sent is never sent again: not by
a task delivered twice, a second worker, or the sweep.

One row per recipient: each address's delivery is recorded and retried on its own, so a
refused address neither holds back nor re-sends anyone else's mail, and nobody sees who else
received it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from smtplib import SMTPDataError, SMTPRecipientsRefused
from urllib.parse import urlsplit

from django.conf import settings
from django.core import mail
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from accounts.models import Organization

from .models import OutboxMessage

log = logging.getLogger(__name__)

# Messages per send task and per sweep run: a big send (a plan of 10,000 people) becomes many
# tasks that workers run side by side, none of them near the task time limit.
CHUNK = 200
# How long a claimed message is left to its sender. It must outlast one whole SMTP exchange
# at EMAIL_TIMEOUT per socket operation (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA,
# QUIT ...), or a slow send could be claimed and sent a second time; it is also how long a
# message whose worker was killed mid-send waits before the sweep takes it.
LEASE = dt.timedelta(minutes=2)
# A send task stops claiming messages after this many seconds and leaves the rest to the
# sweep: with one last send of up to LEASE, it ends well inside the 240 s soft time limit.
SEND_BUDGET = 60.0
# Retries after the mail server refused a message: 1, 2, 4 ... minutes, then hourly; given
# up after about three days (support can still send it from the admin). A server that is
# down is not the message's fault: that attempt is not counted and the message is due again
# at the next sweep, which costs nothing (a sweep stops at the first such error), so
# everything goes within a minute or two of the server's return, however long it was away.
BACKOFF_FIRST = 60
BACKOFF_MAX = 3600
MAX_ATTEMPTS = 72
BACKEND_DOWN_RETRY = dt.timedelta(seconds=60)
# After the broker refused a request, this process stops asking it for a while: one slow
# request per process notices an outage, the next ones do not wait on it.
BROKER_PAUSE = 30.0

# Errors that concern one message only (a refused address, a message too large, a header
# the email package rejects): the next message may go. Anything else (connection refused, a
# time-out, an authentication failure) means the backend is down for all of them.
_MESSAGE_ERRORS = (SMTPRecipientsRefused, SMTPDataError, ValueError)

_broker_paused_until = 0.0


@dataclass(frozen=True)
class NewMessage:
    """One email to write: `to` is one address or several (one row each). `key` names the
    cause; each recipient's row is keyed `<key>|<address>`."""

    key: str
    to: str | Sequence[str]
    subject: str
    text: str
    kind: str
    html: str = ""
    organization: Organization | None = None


@dataclass
class Sent:
    """What one send run did. `left`: messages not tried (the time budget ran out or the
    backend is down); `more`: the sweep filled its chunk, so more may be due."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    left: int = 0
    backend_down: bool = False
    more: bool = False


def one_line(value: str) -> str:
    """A header value on one line: control characters (CR and LF among them) and every run
    of whitespace become one space. A plan named "A\\r\\nBcc: x" gives the subject
    "A Bcc: x", a valid header, instead of a message the email package refuses forever."""
    cleaned = "".join(" " if ord(char) < 32 or 127 <= ord(char) < 160 else char for char in value)
    return " ".join(cleaned.split())


def _subject(value: str) -> str:
    limit = OutboxMessage._meta.get_field("subject").max_length
    value = one_line(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _addresses(to: str | Sequence[str]) -> list[str]:
    """Each address once (compared without case), on one line, blanks dropped."""
    seen, addresses = set(), []
    for raw in [to] if isinstance(to, str) else to:
        address = one_line(raw or "")
        if address and address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


_INSERT = f"""
INSERT INTO {OutboxMessage._meta.db_table}
    (key, organization_id, kind, recipient, subject, text, html,
     created_at, next_attempt_at, attempts, last_error)
SELECT m.key, m.organization_id, m.kind, m.recipient, m.subject, m.text, m.html,
       %s, %s, 0, ''
FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::text[]) AS m(key, organization_id, kind, recipient, subject, text, html)
ON CONFLICT (key) DO NOTHING
RETURNING id
"""  # noqa: S608 - the table name is the model's own; every value is a parameter


def messages_enqueue(*, messages: Iterable[NewMessage]) -> list[int]:
    """Writes the messages, one row per recipient, in the caller's transaction (call it
    inside the transaction of the change that causes them). A key already written is left
    as it is (INSERT … ON CONFLICT DO NOTHING), so a cause retried or run twice writes each
    message once. One statement however many messages. After the commit the new messages
    are handed to a worker (`messages_dispatch`). Returns the ids of the rows written."""
    columns: tuple[list, ...] = ([], [], [], [], [], [], [])
    keys: set[str] = set()
    for message in messages:
        subject = _subject(message.subject)
        organization_id = message.organization.pk if message.organization else None
        for address in _addresses(message.to):
            key = f"{message.key}|{address.lower()}"
            if key in keys:
                continue
            keys.add(key)
            row = (key, organization_id, message.kind, address, subject, message.text)
            for column, value in zip(columns, (*row, message.html), strict=True):
                column.append(value)
    if not keys:
        return []
    now = timezone.now()
    # No savepoint: if this insert fails, the change that caused it must not commit either.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(_INSERT, [now, now, *columns])
        ids = sorted(row[0] for row in cursor.fetchall())
        if ids:
            transaction.on_commit(lambda: messages_dispatch(message_ids=ids), robust=True)
    return ids


def message_enqueue(
    *,
    key: str,
    to: str | Sequence[str],
    subject: str,
    text: str,
    kind: str,
    html: str = "",
    organization: Organization | None = None,
) -> list[int]:
    """One message (to one or more recipients); see messages_enqueue."""
    return messages_enqueue(
        messages=[
            NewMessage(
                key=key,
                to=to,
                subject=subject,
                text=text,
                html=html,
                kind=kind,
                organization=organization,
            )
        ]
    )


def messages_dispatch(*, message_ids: Sequence[int]) -> int:
    """Asks a worker to send these messages now, CHUNK to a task; returns how many were
    handed over. It never raises: it runs after the change that wrote the messages has
    committed, when an error could only turn a success into a 500. What the broker did not
    take stays in the outbox, due, and the sweep sends it within a minute or two of the
    broker coming back."""
    global _broker_paused_until
    if not message_ids:
        return 0
    if time.monotonic() < _broker_paused_until:
        log.warning(
            "outbox: broker unavailable a moment ago; %d message(s) left for the sweep",
            len(message_ids),
        )
        return 0
    from . import tasks  # tasks import this module

    handed = 0
    try:
        for start in range(0, len(message_ids), CHUNK):
            chunk = list(message_ids[start : start + CHUNK])
            if len(chunk) == 1:
                tasks.send_message.delay(chunk[0])
            else:
                tasks.send_messages.delay(chunk)
            handed += len(chunk)
    except Exception as error:  # anything at all: see the docstring
        if isinstance(error, BrokerError):
            _broker_paused_until = time.monotonic() + BROKER_PAUSE
        log.warning(
            "outbox: %d message(s) not handed to a worker (%s: %s); the sweep will send them",
            len(message_ids) - handed,
            type(error).__name__,
            error,
        )
    return handed


def messages_due(*, now: dt.datetime | None = None) -> QuerySet[OutboxMessage]:
    """Unsent messages the sweep should send: never tried or past their backoff, not claimed
    by a sender (or its lease ran out: that sender died), and not given up."""
    now = now or timezone.now()
    return OutboxMessage.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lte=now),
        sent_at__isnull=True,
        next_attempt_at__lte=now,
        attempts__lt=MAX_ATTEMPTS,
    )


def _claim(message_id: int, *, force: bool) -> OutboxMessage | None:
    """The message, leased to this sender in a transaction of its own, or None if it is sent,
    being sent (leased), or (unless `force`) waiting out its backoff or given up. SKIP LOCKED:
    a sender that finds another claiming the row at this very moment leaves it to it."""
    now = timezone.now()
    with transaction.atomic():
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
            .filter(pk=message_id, sent_at__isnull=True)
            .first()
        )
        if message is None:
            return None
        if not force and (message.next_attempt_at > now or message.attempts >= MAX_ATTEMPTS):
            return None
        # An attempt counts when it starts: a message that kills its worker every time is
        # given up like one that fails.
        message.claimed_until = now + LEASE
        message.attempts += 1
        message.save(update_fields=["claimed_until", "attempts"])
    return message


def _message_id(message: OutboxMessage) -> str:
    # The same Message-ID on every attempt: if a message is ever delivered twice (its worker
    # died after the server accepted it, before it was marked sent), mail systems that drop
    # duplicates by Message-ID can drop it.
    domain = urlsplit(settings.SITE_URL).hostname or "localhost"
    return f"<outbox.{message.pk}.{int(message.created_at.timestamp())}@{domain}>"


def _deliver(message: OutboxMessage, backend) -> None:
    email = mail.EmailMultiAlternatives(
        subject=one_line(message.subject),
        body=message.text,
        to=[message.recipient],
        headers={"Message-ID": _message_id(message)},
        connection=backend,
    )
    if message.html:
        email.attach_alternative(message.html, "text/html")
    backend.open()  # one connection for a whole chunk; a no-op once open
    if backend.send_messages([email]) != 1:
        raise RuntimeError("the email backend sent nothing")


def _mark_sent(message: OutboxMessage) -> None:
    for attempt in range(3):
        try:
            OutboxMessage.objects.filter(pk=message.pk).update(
                sent_at=timezone.now(), claimed_until=None
            )
            return
        except (OperationalError, InterfaceError):
            # The email went: unmarked, it would be sent again once its lease ends, so a
            # dropped database connection is worth a reconnection and a short wait.
            if attempt == 2 or connection.in_atomic_block:
                raise
            connection.close_if_unusable_or_obsolete()
            time.sleep(1)


def _mark_failed(message: OutboxMessage, error: Exception, *, backend_down: bool) -> None:
    if backend_down:
        message.attempts -= 1  # given back: see BACKEND_DOWN_RETRY
        delay = BACKEND_DOWN_RETRY
    else:
        delay = dt.timedelta(seconds=min(BACKOFF_FIRST * 2 ** (message.attempts - 1), BACKOFF_MAX))
    OutboxMessage.objects.filter(pk=message.pk, sent_at__isnull=True).update(
        attempts=message.attempts,
        claimed_until=None,
        next_attempt_at=timezone.now() + delay,
        last_error=f"{type(error).__name__}: {error}"[:2000],
    )
    if backend_down:
        log.warning(
            "outbox: mail server unavailable, sending paused until the next sweep: %s", error
        )
        return
    given_up = message.attempts >= MAX_ATTEMPTS
    log.log(
        logging.ERROR if given_up else logging.WARNING,
        "outbox: message %s to %s refused (attempt %d%s): %s",
        message.pk,
        message.recipient,
        message.attempts,
        ", given up" if given_up else "",
        error,
    )


def messages_send(
    *, message_ids: Sequence[int], force: bool = False, budget: float = SEND_BUDGET
) -> Sent:
    """Sends these messages, one after the other over one backend connection, each claimed
    first (see message_send). Stops at the first error that says the backend is down, or
    after `budget` seconds: the messages not tried stay due for the sweep. Never call it
    inside a transaction: the claim's row lock would then last through the SMTP exchange."""
    result = Sent()
    backend = mail.get_connection()
    started = time.monotonic()
    try:
        for index, message_id in enumerate(message_ids):
            if result.backend_down or time.monotonic() - started > budget:
                result.left = len(message_ids) - index
                break
            message = _claim(message_id, force=force)
            if message is None:
                result.skipped += 1
                continue
            try:
                _deliver(message, backend)
            except Exception as error:  # every backend error is recorded, none is lost
                result.backend_down = not isinstance(error, _MESSAGE_ERRORS)
                _mark_failed(message, error, backend_down=result.backend_down)
                result.failed += 1
                continue
            _mark_sent(message)
            result.sent += 1
    finally:
        with contextlib.suppress(Exception):  # a connection already broken: nothing to close
            backend.close()
    return result


def message_send(*, message_id: int, force: bool = False) -> str:
    """Sends one message unless it is sent or being sent: "sent", "failed" (recorded, to be
    tried again later) or "skipped". `force` (support's "Send again now") ignores the
    backoff and the give-up, never another sender's lease."""
    result = messages_send(message_ids=[message_id], force=force)
    return "sent" if result.sent else "failed" if result.failed else "skipped"


def messages_send_due(*, limit: int | None = None) -> Sent:
    """The sweep: up to `limit` (CHUNK) due messages, oldest due first."""
    limit = limit or CHUNK
    ids = list(
        messages_due().order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit]
    )
    result = messages_send(message_ids=ids)
    result.more = len(ids) == limit and result.sent > 0 and not result.backend_down
    return result
