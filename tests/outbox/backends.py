"""Email backends for the outbox tests: a mail server that fails on demand, and one that
records to a file what a real worker (another process) sent."""

import json
import os
from smtplib import SMTPRecipientsRefused, SMTPServerDisconnected

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend


class FlakyBackend(LocmemBackend):
    """Django's in-memory backend (mail.outbox), with a switchable outage: while `down`
    (or for the next `failures` sends) every send raises as a vanished SMTP server does;
    addresses in `refused` are refused one by one, as a server refuses a mailbox."""

    down = False
    failures = 0
    refused: set[str] = set()
    calls = 0

    @classmethod
    def reset(cls) -> None:
        cls.down, cls.failures, cls.refused, cls.calls = False, 0, set(), 0

    def send_messages(self, email_messages):
        FlakyBackend.calls += 1
        if FlakyBackend.down or FlakyBackend.failures > 0:
            FlakyBackend.failures = max(FlakyBackend.failures - 1, 0)
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        for message in email_messages:
            refused = {address for address in message.to if address in FlakyBackend.refused}
            if refused:
                raise SMTPRecipientsRefused({a: (550, b"No such mailbox") for a in refused})
        return super().send_messages(email_messages)


class FileLogBackend(BaseEmailBackend):
    """One JSON line per message to the file named by OUTBOX_TEST_MAIL_LOG: what a worker
    in another process sent, for the test to count."""

    def send_messages(self, email_messages):
        with open(os.environ["OUTBOX_TEST_MAIL_LOG"], "a", encoding="utf-8") as log:
            for message in email_messages:
                message.message()  # what the SMTP backend would do: a bad header raises here
                line = {"to": message.to, "subject": message.subject}
                log.write(json.dumps(line) + "\n")
        return len(email_messages)
