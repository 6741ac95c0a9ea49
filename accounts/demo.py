"""Demo organizations and people. Idempotent: re-running updates, never duplicates."""

from django.db import transaction

from .models import Membership, Organization, User

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - printed on purpose: it is demo data.

ORGANIZATIONS = [
    # slug, name, time zone, redemption point, when short, lot validity days
    ("acme", "Acme Corp", "America/New_York", "confirm", "buy", 365),
    ("acme-labs", "Acme Labs", "Europe/Paris", "start", "bill_overage", None),
    ("globex", "Globex", "Europe/London", "confirm", "buy", 365),
]

PEOPLE = [
    # email, first name, last name, [(organization slug, role)]
    ("admin@acme.example", "Ada", "Admin", [("acme", "admin"), ("acme-labs", "admin")]),
    ("manager@acme.example", "Max", "Manager", [("acme", "manager")]),
    ("learner1@acme.example", "Lea", "Learner", [("acme", "learner")]),
    ("learner2@acme.example", "Leo", "Learner", [("acme", "learner")]),
    ("learner3@acme.example", "Liv", "Learner", [("acme", "learner")]),
    ("outsider@globex.example", "Otto", "Outsider", [("globex", "admin")]),
]

SUPPORT_EMAIL = "support@credits.example"


@transaction.atomic
def seed() -> list[tuple[str, str]]:
    """Create or refresh the demo data; return (email, what they are) for the printout."""
    orgs = {}
    for slug, name, zone, point, short, validity in ORGANIZATIONS:
        orgs[slug], _ = Organization.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "time_zone": zone,
                "redemption_point": point,
                "when_short": short,
                "lot_validity_days": validity,
            },
        )
    logins = []
    for email, first, last, roles in PEOPLE:
        user = _user(email, first_name=first, last_name=last)
        for slug, role in roles:
            Membership.objects.update_or_create(
                user=user, organization=orgs[slug], defaults={"role": role}
            )
        logins.append((email, ", ".join(f"{role} of {orgs[slug].name}" for slug, role in roles)))
    _user(SUPPORT_EMAIL, first_name="Sam", last_name="Support", is_staff=True, is_superuser=True)
    logins.append((SUPPORT_EMAIL, "support staff (Django admin at /admin/)"))
    return logins


def _user(email: str, **fields) -> User:
    user = User.objects.filter(email__iexact=email).first() or User(email=email)
    for name, value in fields.items():
        setattr(user, name, value)
    user.set_password(DEMO_PASSWORD)
    user.save()
    return user
