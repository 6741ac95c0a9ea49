"""Support sees every outgoing email, read-only, and can send an unsent one again at once."""

from django.contrib import admin, messages
from django.utils import timezone

from config.admin import LargeTableAdmin, ReadOnlyAdmin, organization_filter, recent_values_filter

from . import services
from .models import OutboxMessage

# One request sends at most this many (each one an SMTP exchange); more wait for the sweep.
RESEND_LIMIT = 100


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("unsent", "Unsent"),
            ("failing", "Unsent, with an error"),
            ("given_up", "Given up"),
            ("sent", "Sent"),
        ]

    def queryset(self, request, queryset):
        unsent = queryset.filter(sent_at__isnull=True)
        match self.value():
            case "unsent":
                return unsent
            case "failing":
                return unsent.exclude(last_error="")
            case "given_up":
                return unsent.filter(attempts__gte=services.MAX_ATTEMPTS)
            case "sent":
                return queryset.filter(sent_at__isnull=False)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """Every email ever sent: a table that only grows. Newest first by id, a capped count, no
    date hierarchy (it asks for every distinct date), and kinds offered from recent rows."""

    list_display = [
        "id",
        "kind",
        "recipient",
        "subject",
        "organization",
        "created_at",
        "state",
        "attempts",
        "sent_at",
    ]
    list_filter = [StateFilter, recent_values_filter("kind"), organization_filter()]
    search_fields = ["recipient", "subject", "key", "organization__name"]
    list_select_related = ["organization"]
    actions = ["send_again_now"]
    fields = [
        "kind",
        "recipient",
        "subject",
        "organization",
        "key",
        "created_at",
        "sent_at",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "last_error",
        "text",
        "html",
    ]

    def get_queryset(self, request):
        # The bodies are what is big, and no list shows them; the change page reads them.
        return super().get_queryset(request).defer("text", "html")

    @admin.display(description="state")
    def state(self, message: OutboxMessage) -> str:
        if message.sent_at:
            return "sent"
        if message.attempts >= services.MAX_ATTEMPTS:
            return "given up"
        if message.claimed_until and message.claimed_until > timezone.now():
            return "sending"
        return "retrying" if message.last_error else "waiting"

    # Viewing is enough: it only sends what was never sent, and each message at most once.
    @admin.action(description="Send again now (unsent ones)", permissions=["view"])
    def send_again_now(self, request, queryset):
        ids = list(
            queryset.filter(sent_at__isnull=True).order_by("id").values_list("pk", flat=True)
        )
        if not ids:
            self.message_user(request, "Every selected message was already sent.")
            return
        if len(ids) > RESEND_LIMIT:
            self.message_user(
                request,
                f"Select at most {RESEND_LIMIT} unsent messages at once; the sweep sends the "
                "others on its own.",
                messages.WARNING,
            )
            return
        result = services.messages_send(message_ids=ids, force=True)
        level = messages.SUCCESS if not (result.failed or result.left) else messages.WARNING
        self.message_user(
            request,
            f"{result.sent} sent, {result.failed} failed (see their last error), "
            f"{result.skipped} being sent elsewhere or already sent, {result.left} not tried "
            "(the mail server is down or slow; the sweep will retry them).",
            level,
        )
