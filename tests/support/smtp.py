"""A real SMTP server for tests (aiosmtpd, on a spare loopback port, in a thread of the test
process): it records every message it accepts, and on demand refuses (451 to MAIL, RCPT or
DATA), is stopped and started again on the same port, or stalls in DATA.

    server = SmtpServer().start()
    # EMAIL_URL=server.url for a worker (with TEST_EMAIL_BACKEND=SMTP_BACKEND)
    server.refuse = "MAIL"          # every MAIL FROM answered 451; None: accept again
    server.stop(); server.start()   # connection refused in between
    server.stall_next()             # the next DATA blocks until release() (or the time-out)
    server.stalled.wait(10)         # ... a client is blocked in it now
    server.received                 # [Received(message_id, recipients, subject), ...]

A message is recorded only once the server answers 250 to its DATA: a client that
disconnects while DATA is stalled delivered nothing (as with a server that had not yet
taken the message), and each recorded message is one the client was told was accepted.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default as default_policy

from aiosmtpd.controller import Controller

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
REFUSAL = "451 4.3.0 Temporarily unavailable, try again later"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Received:
    message_id: str
    recipients: tuple[str, ...]
    subject: str


class _Handler:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_MAIL(self, smtp, session, envelope, address, mail_options):
        if self.server.refuse == "MAIL":
            return REFUSAL
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        if self.server.refuse == "RCPT":
            return REFUSAL
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        server = self.server
        if server.refuse == "DATA":
            return REFUSAL
        if server._take_stall():
            server.stalled.set()
            deadline = time.monotonic() + server.stall_seconds
            # Cancelled here if the client goes away: nothing is recorded.
            while not server._released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        message = message_from_bytes(envelope.original_content, policy=default_policy)
        server._record(
            Received(
                message_id=str(message["Message-ID"] or ""),
                recipients=tuple(envelope.rcpt_tos),
                subject=str(message["Subject"] or ""),
            )
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int | None = None, *, stall_seconds: float = 30.0):
        self.port = port or free_port()
        self.refuse: str | None = None  # "MAIL", "RCPT" or "DATA": answered 451
        self.stall_seconds = stall_seconds
        self.stalled = threading.Event()
        self._released = threading.Event()
        self._stalls = 0
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def recipients(self) -> list[str]:
        """Every accepted recipient, once per message accepted for it."""
        return [address for message in self.received for address in message.recipients]

    def start(self) -> SmtpServer:
        assert self._controller is None, "already running"
        for attempt in range(50):  # the port of a server just stopped may take a moment
            controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
            try:
                controller.start()
                break
            except Exception:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self._controller = controller
        return self

    def stop(self) -> None:
        """Closes the listening socket and every open connection: clients get ECONNREFUSED."""
        if self._controller is not None:
            self._released.set()
            self._controller.stop()
            self._controller = None

    def stall_next(self, count: int = 1) -> None:
        """The next `count` DATA commands block until release() or `stall_seconds`."""
        with self._lock:
            self._stalls += count
        self.stalled.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _take_stall(self) -> bool:
        with self._lock:
            if self._stalls <= 0:
                return False
            self._stalls -= 1
            return True

    def _record(self, message: Received) -> None:
        with self._lock:
            self._received.append(message)
