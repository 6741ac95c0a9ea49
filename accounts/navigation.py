"""The navigation of each role. Pages are listed by URL name; one that does not exist yet
(a later feature) is left out rather than linked to a 404."""

from django.urls import NoReverseMatch, reverse

from .models import Membership

NAVIGATION: dict[str, list[tuple[str, str]]] = {
    Membership.Role.ADMIN: [
        ("Dashboard", "dashboard"),
        ("Catalog", "catalog:index"),
        ("Cart", "catalog:cart"),
        ("Training plans", "training:plans"),
        ("Assign credits", "training:allocations"),
        ("Credits", "credits:overview"),
        ("Billing", "billing:overview"),
    ],
    Membership.Role.MANAGER: [
        ("Dashboard", "dashboard"),
        ("My courses", "training:my_courses"),
    ],
    Membership.Role.LEARNER: [
        ("Dashboard", "dashboard"),
        ("My training", "training:my_training"),
    ],
}


def navigation_for(role: str | None) -> list[dict[str, str]]:
    items = []
    for label, name in NAVIGATION.get(role or "", []):
        try:
            items.append({"label": label, "url": reverse(name), "name": name})
        except NoReverseMatch:
            continue
    return items
