"""Every URL of the project with parameters, and how to point it at an object of a given
organization: shared by the tenant-isolation and hostile-input tests."""

import uuid
from collections.abc import Callable, Iterator

from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Membership
from billing.models import AutoTopUp
from catalog.services import cart_add
from tests.billing.factories import PurchaseFactory
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.training.factories import plan_with
from training.allocations import services as allocations
from training.invitations import services as invitations
from training.models import CourseManager, CreditRequest, Enrollment

# The simulated checkout exists only with DEBUG on and no Stripe key.
SIMULATED = {"DEBUG": True, "STRIPE_SECRET_KEY": ""}

# URL name -> (HTTP method, builder of kwargs for an object of `organization`, settings)
OBJECT_URLS: dict[str, tuple[str, Callable, dict]] = {
    "switch_organization": ("post", lambda org: {"slug": org.slug}, {}),
    "billing:purchase": ("get", lambda org: {"pk": PurchaseFactory(organization=org).pk}, {}),
    "catalog:cart_line": ("post", lambda org: {"pk": cart_line_of(org).pk}, {}),
    "training:plan": ("get", lambda org: {"pk": plan_of(org).pk}, {}),
    "training:participants_add": ("post", lambda org: {"pk": plan_of(org).pk}, {}),
    "training:participants_remove": ("post", lambda org: {"pk": plan_of(org).pk}, {}),
    "training:member_search": ("get", lambda org: {"pk": plan_of(org).pk}, {}),
    "training:participant_remove": (
        "post",
        lambda org: {"pk": (p := plan_of(org)).pk, "participant_id": p.participants.get().pk},
        {},
    ),
    "training:confirm": ("post", lambda org: {"pk": plan_of(org).pk}, {}),
    "training:item_seats": (
        "post",
        lambda org: {"pk": (p := plan_of(org)).pk, "item_id": p.items.get().pk},
        {},
    ),
    "training:assignment_toggle": (
        "post",
        lambda org: {"pk": (p := plan_of(org)).pk, "item_id": p.items.get().pk},
        {},
    ),
    "training:participant_replace": (
        "post",
        lambda org: {"pk": (p := plan_of(org)).pk, "participant_id": p.participants.get().pk},
        {},
    ),
    "training:cancel": ("post", lambda org: {"pk": plan_of(org).pk}, {}),
    "training:enrollment_start": ("post", lambda org: {"pk": enrollment_of(org).pk}, {}),
    "training:enrollment_progress": ("post", lambda org: {"pk": enrollment_of(org).pk}, {}),
    "training:managed_course": ("get", lambda org: {"pk": course_manager_of(org).pk}, {}),
    "training:invite": ("post", lambda org: {"pk": course_manager_of(org).pk}, {}),
    "training:credit_request_create": (
        "post",
        lambda org: {"pk": course_manager_of(org).pk},
        {},
    ),
    "training:credit_request_answer": ("post", lambda org: {"pk": credit_request_of(org).pk}, {}),
    "training:invitation_cancel": ("post", lambda org: {"pk": invitation_of(org).pk}, {}),
    "training:invitation_reinvite": ("post", lambda org: {"pk": invitation_of(org).pk}, {}),
    "training:invitation_replace": ("post", lambda org: {"pk": invitation_of(org).pk}, {}),
    "training:assignment_progress": (
        "post",
        lambda org: {"pk": invitation_of(org, accepted_by_admin=True).pk},
        {},
    ),
    "billing:simulated_checkout": (
        "get",
        lambda org: {"session_id": PurchaseFactory(organization=org).checkout_session_id},
        SIMULATED,
    ),
    "billing:simulated_setup": (
        "get",
        lambda org: {"session_id": setup_session_of(org)},
        SIMULATED,
    ),
}

PUBLIC_PARAMETER_URLS = {
    # Signed, single-use token; not tied to an organization.
    "password_reset_confirm",
    # The catalog is the platform's, the same for every organization.
    "catalog:course",
    "catalog:cart_add",
    # An invitation's unguessable token is its own proof; it names one address.
    "training:join",
    "training:accept",
}
# (The Stripe webhook takes no parameters and proves its sender by signature.)

# The Django admin is for support staff only; tested in tests/accounts/test_admin.py.
EXCLUDED_NAMESPACES = {"admin"}


def admin_of(org):
    return Membership.objects.filter(organization=org, role="admin").first().user


def cart_line_of(org):
    return cart_add(organization=org, user=admin_of(org), level=LevelFactory(), seats=1)


def plan_of(org):
    admin = admin_of(org)
    return plan_with(org, admin, emails=[admin.email])


def enrollment_of(org):
    person = plan_of(org).participants.get()
    return Enrollment.objects.create(participant=person, level=LevelFactory(), cost=1)


def course_manager_of(org):
    return CourseManager.objects.create(
        organization=org, course=LevelFactory().course, user=admin_of(org)
    )


def setup_session_of(org):
    """An auto top-up waiting for its card, with its simulated setup session."""
    session_id = f"cs_sim_setup_{org.pk}_{uuid.uuid4().hex}"
    AutoTopUp.objects.create(
        organization=org,
        threshold=5,
        quantity=10,
        monthly_cap=50,
        configured_by=admin_of(org),
        setup_session_id=session_id,
    )
    return session_id


def credit_request_of(org):
    return CreditRequest.objects.create(
        organization=org, manager=course_manager_of(org), quantity=2, token=uuid.uuid4()
    )


def invitation_of(org, accepted_by_admin=False):
    """A real invitation: credits granted, allocated to the course and the manager, held."""
    manager = course_manager_of(org)
    level = LevelFactory(course=manager.course)
    grant(org, 5)
    allocations.course_allocate(organization=org, course=manager.course, quantity=2, actor=None)
    allocations.manager_assign(manager=manager, quantity=2, actor=None)
    (invitation,), _ = invitations.invite(
        manager=manager, level=level, text=manager.user.email, token=str(uuid.uuid4())
    )
    if accepted_by_admin:
        invitations.invite_accept(token=invitation.token, user=manager.user)
    return invitation


def walk_urls(patterns, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in EXCLUDED_NAMESPACES:
                continue
            namespace = f"{prefix}{entry.namespace}:" if entry.namespace else prefix
            yield from walk_urls(entry.url_patterns, namespace)
        elif entry.name:
            yield f"{prefix}{entry.name}", entry


def url_parameters(pattern: URLPattern) -> set[str]:
    converters = getattr(pattern.pattern, "converters", {})
    return set(converters) or set(pattern.pattern.regex.groupindex)


def parameterised_url_names() -> list[str]:
    return sorted(name for name, p in walk_urls(get_resolver().url_patterns) if url_parameters(p))
