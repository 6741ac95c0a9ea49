"""Walk every URL pattern of the project and prove that an admin of another organization
gets 404 for each object of the first.

Every pattern that takes parameters must appear in OBJECT_URLS (how to point it at an object
of `organization`, and with which method) or in PUBLIC_PARAMETER_URLS (with the reason it is
not scoped to an organization). A new URL that is in neither fails this test.
"""

import uuid
from collections.abc import Callable, Iterator

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import Membership
from catalog.services import cart_add
from tests.billing.factories import PurchaseFactory
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.training.factories import plan_with
from training import assignments
from training.models import CourseManager, Enrollment

pytestmark = pytest.mark.django_db

# The simulated checkout exists only with DEBUG on and no Stripe key.
SIMULATED = {"DEBUG": True, "STRIPE_SECRET_KEY": ""}

# URL name -> (HTTP method, builder of kwargs for an object of `organization`, settings)
OBJECT_URLS: dict[str, tuple[str, Callable, dict]] = {
    "switch_organization": ("post", lambda org: {"slug": org.slug}, {}),
    "billing:purchase": ("get", lambda org: {"pk": PurchaseFactory(organization=org).pk}, {}),
    "catalog:cart_line": ("post", lambda org: {"pk": _cart_line(org).pk}, {}),
    "training:plan": ("get", lambda org: {"pk": _plan(org).pk}, {}),
    "training:participants_add": ("post", lambda org: {"pk": _plan(org).pk}, {}),
    "training:participant_remove": (
        "post",
        lambda org: {"pk": (p := _plan(org)).pk, "participant_id": p.participants.get().pk},
        {},
    ),
    "training:confirm": ("post", lambda org: {"pk": _plan(org).pk}, {}),
    "training:cancel": ("post", lambda org: {"pk": _plan(org).pk}, {}),
    "training:enrollment_start": ("post", lambda org: {"pk": _enrollment(org).pk}, {}),
    "training:enrollment_progress": ("post", lambda org: {"pk": _enrollment(org).pk}, {}),
    "training:managed_course": ("get", lambda org: {"pk": _course_manager(org).pk}, {}),
    "training:invite": ("post", lambda org: {"pk": _course_manager(org).pk}, {}),
    "training:invitation_cancel": ("post", lambda org: {"pk": _invitation(org).pk}, {}),
    "training:invitation_reinvite": ("post", lambda org: {"pk": _invitation(org).pk}, {}),
    "training:assignment_progress": (
        "post",
        lambda org: {"pk": _invitation(org, accepted_by_admin=True).pk},
        {},
    ),
    "billing:simulated_checkout": (
        "get",
        lambda org: {"session_id": PurchaseFactory(organization=org).checkout_session_id},
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


def _admin_of(org):
    return Membership.objects.filter(organization=org, role="admin").first().user


def _cart_line(org):
    return cart_add(organization=org, user=_admin_of(org), level=LevelFactory(), seats=1)


def _plan(org):
    admin = _admin_of(org)
    return plan_with(org, admin, emails=[admin.email])


def _enrollment(org):
    person = _plan(org).participants.get()
    return Enrollment.objects.create(participant=person, level=LevelFactory(), cost=1)


def _course_manager(org):
    return CourseManager.objects.create(
        organization=org, course=LevelFactory().course, user=_admin_of(org)
    )


def _invitation(org, accepted_by_admin=False):
    """A real invitation: credits granted, allocated to the course and the manager, held."""
    manager = _course_manager(org)
    level = LevelFactory(course=manager.course)
    grant(org, 5)
    assignments.course_allocate(organization=org, course=manager.course, quantity=2, actor=None)
    assignments.manager_assign(manager=manager, quantity=2, actor=None)
    (invitation,), _ = assignments.invite(
        manager=manager, level=level, text=manager.user.email, token=str(uuid.uuid4())
    )
    if accepted_by_admin:
        assignments.invite_accept(token=invitation.token, user=manager.user)
    return invitation


def _walk(patterns, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in EXCLUDED_NAMESPACES:
                continue
            namespace = f"{prefix}{entry.namespace}:" if entry.namespace else prefix
            yield from _walk(entry.url_patterns, namespace)
        elif entry.name:
            yield f"{prefix}{entry.name}", entry


def _parameters(pattern: URLPattern) -> set[str]:
    converters = getattr(pattern.pattern, "converters", {})
    return set(converters) or set(pattern.pattern.regex.groupindex)


def _parameterised_url_names() -> list[str]:
    return sorted(name for name, p in _walk(get_resolver().url_patterns) if _parameters(p))


def test_every_parameterised_url_is_covered():
    uncovered = [
        name
        for name in _parameterised_url_names()
        if name not in OBJECT_URLS and name not in PUBLIC_PARAMETER_URLS
    ]
    assert uncovered == [], f"add these URLs to OBJECT_URLS in {__file__}: {uncovered}"


@pytest.mark.parametrize("url_name", sorted(OBJECT_URLS))
def test_outsider_gets_404_for_objects_of_another_organization(
    url_name, organization, admin, outsider_client, settings
):
    method, build_kwargs, overrides = OBJECT_URLS[url_name]
    for name, value in overrides.items():
        setattr(settings, name, value)
    url = reverse(url_name, kwargs=build_kwargs(organization))
    response = getattr(outsider_client, method)(url)
    assert response.status_code == 404, f"{method.upper()} {url} -> {response.status_code}"


@pytest.mark.parametrize("url_name", sorted(OBJECT_URLS))
def test_the_member_reaches_the_same_objects(url_name, organization, admin_client, settings):
    # The other half of the proof: the 404 above is about the outsider, not a broken URL.
    method, build_kwargs, overrides = OBJECT_URLS[url_name]
    for name, value in overrides.items():
        setattr(settings, name, value)
    url = reverse(url_name, kwargs=build_kwargs(organization))
    response = getattr(admin_client, method)(url)
    assert response.status_code < 400, f"{method.upper()} {url} -> {response.status_code}"
