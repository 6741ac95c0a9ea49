"""Every email the product sends, as a row written in the transaction of the change that
causes it (outbox/services.py): it is sent after that transaction commits, retried until it
goes, and never sent twice."""

from django.db import models
from django.utils import timezone


class OutboxMessage(models.Model):
    """One email to one recipient. `key` names its cause and recipient (a cause retried or
    run twice writes the same key, hence one row). `claimed_until` is the lease of the
    sender working on it; `next_attempt_at` is when it may be tried (again) after a
    failure; `sent_at` is set once the email backend accepted it. `attempts` counts the tries
    that reached the mail server (or died trying); a try the server was down for is not
    counted."""

    key = models.TextField()
    organization = models.ForeignKey(
        "accounts.Organization",
        # The record of what was sent outlives the organization it was about.
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="outbox_messages",
    )
    kind = models.CharField(max_length=50)
    recipient = models.EmailField(max_length=254)
    subject = models.CharField(max_length=255)
    text = models.TextField()
    html = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A constraint, not unique=True: no extra pattern index on a column never searched
            # by prefix. INSERT … ON CONFLICT (key) DO NOTHING relies on it.
            models.UniqueConstraint(fields=["key"], name="outbox_message_once"),
        ]
        indexes = [
            # The sweep's question, "what is still unsent and due?", stays cheap however many
            # sent messages accumulate.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(sent_at__isnull=True),
                name="outbox_unsent_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient}"
