"""Every page and every form, fed what customers and scripts really send: NUL bytes, 10 kB
strings, 2**31, negative and unicode numbers, impossible dates, formula-looking text. Each
answer is a page, a redirect or a 4xx — never a 5xx.

Every URL of the project is visited (objects of the admin's own organization, built as in
the tenant-isolation test), with every parameter name any form or query string reads set to
the hostile value, by GET and by POST.
"""

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from tests.billing.factories import PurchaseFactory
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.support.urls import OBJECT_URLS, invitation_of, url_parameters, walk_urls
from tests.training.factories import plan_with

pytestmark = pytest.mark.django_db

HOSTILE = {
    "nul": "a\x00b",
    "long": "x" * 10_000,
    "int32": str(2**31),
    "int64": str(2**63),
    "negative": "-1",
    "unicode digits": "\u0661\u0662",
    "bad date": "2026-02-30",
    "far date": "9999-12-31",
    "formula": '=HYPERLINK("http://x","y")',
    "emoji": "\U0001f4a5 é ü",
    "long email": "a" * 250 + "@example.com",
    "empty": "",
}

# Every name a form or a query string of the project reads.
FIELDS = [
    "action", "as_of", "category", "course", "csv", "email", "emails", "end", "kind", "level",
    "manager", "members", "name", "need", "new_password1", "new_password2", "next", "package",
    "page", "participant", "password", "plan", "progress", "q", "quantity", "request_token",
    "seats", "snapshot", "start", "start_date", "token", "user", "username",
]  # fmt: skip

PUBLIC_KWARGS = {
    "catalog:course": lambda org: {"slug": LevelFactory().course.slug},
    "catalog:cart_add": lambda org: {"level_id": LevelFactory().pk},
    "training:join": lambda org: {"token": _plan_of(org).participants.get().invite_token},
    "training:accept": lambda org: {"token": invitation_of(org).token},
    "password_reset_confirm": lambda org: {"uidb64": "MQ", "token": "set-password"},
}


def _plan_of(org):
    admin = org.memberships.filter(role="admin").first().user
    return plan_with(org, admin, emails=["someone@acme.test"])


def _urls(organization) -> list[tuple[str, str, dict]]:
    from django.urls import get_resolver

    found = []
    for name, pattern in walk_urls(get_resolver().url_patterns):
        if url_parameters(pattern):
            if name in OBJECT_URLS:
                _, build, overrides = OBJECT_URLS[name]
            else:
                build, overrides = PUBLIC_KWARGS[name], {}
            found.append((name, reverse(name, kwargs=build(organization)), overrides))
        else:
            found.append((name, reverse(name), {}))
    return found


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_no_page_or_form_answers_hostile_input_with_a_server_error(
    kind, organization, admin, settings
):
    grant(organization, 50)
    PurchaseFactory(organization=organization)
    value = HOSTILE[kind]
    data = {field: value for field in FIELDS}
    failures = []
    for name, url, overrides in _urls(organization):
        for setting, setting_value in overrides.items():
            setattr(settings, setting, setting_value)
        if name in {"logout", "billing:stripe_webhook"}:
            continue  # logging out ends the session; the webhook has its own signature tests
        client = Client(raise_request_exception=False)
        client.force_login(admin)
        for method in ("get", "post"):
            response = getattr(client, method)(url, data)
            if response.status_code >= 500:
                failures.append(f"{method.upper()} {url} with {kind}: {response.status_code}")
        for setting in overrides:
            setattr(settings, setting, getattr(settings, setting))
    assert failures == []


def test_the_signed_out_pages_answer_hostile_input_without_a_server_error(organization, admin):
    client = Client(raise_request_exception=False)
    failures = []
    for kind, value in HOSTILE.items():
        data = {field: value for field in FIELDS}
        for url in [reverse("login"), reverse("password_reset"), "/admin/login/"]:
            response = client.post(url, data)
            if response.status_code >= 500:
                failures.append(f"POST {url} with {kind}: {response.status_code}")
    assert failures == []


def test_a_random_token_in_a_link_is_a_404_not_a_500(client):
    for name in ["training:join", "training:accept"]:
        response = client.get(reverse(name, kwargs={"token": uuid.uuid4()}))
        assert response.status_code in (404, 410)
