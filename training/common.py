"""What every part of training shares: its refusals' base, and small wordings."""

from __future__ import annotations

from django.contrib import messages

from config.errors import Refusal


class TrainingRefused(Refusal):
    """A refusal of training (plans, allocations, invitations, learners), fit to show."""


def split_emails(text: str) -> list[str]:
    for separator in ",;\t":
        text = text.replace(separator, "\n")
    return [part.strip() for part in text.splitlines() if part.strip()]


def people_phrase(count: int) -> str:
    """ "1 person", "1,204 people"."""
    return f"{count:,} {'person' if count == 1 else 'people'}"


def bounded(text: str, limit: int = 255) -> str:
    """Ledger references are 255 characters; a long plan name is shortened, not refused."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def form_errors_shown(request, form) -> None:
    """Every error of an invalid form as a message on the page it sends the user back to."""
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, error)
