import uuid

from django import template

register = template.Library()


@register.filter
def seat_in(participant, item) -> str:
    """ "confirmed", "pending" or "" for a participant's seat in a plan item (their
    assignments are prefetched by the plan page)."""
    for assignment in participant.assignments.all():
        if assignment.item_id == item.pk:
            return "confirmed" if assignment.confirmed_at else "pending"
    return ""


@register.simple_tag
def form_token() -> str:
    """A fresh one-time token for one form: each form on a page acts once, on its own."""
    return str(uuid.uuid4())
