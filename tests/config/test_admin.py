"""config/admin.py's helpers for lists over big tables: the capped count is exact below its
cap, filtered or not, stops at it otherwise and says so; the filters read no whole table."""

import pytest
from django.contrib import admin

from config.admin import CappedCountPaginator
from credits.models import Lot
from outbox import services as outbox
from outbox.models import OutboxMessage
from tests.accounts.factories import UserFactory
from tests.credits.factories import grant
from tests.support.admin_lists import open_list

pytestmark = pytest.mark.django_db


@pytest.fixture
def support(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 4)
    # Two rows a page, so that the cap decides how many pages there are.
    monkeypatch.setattr(admin.site._registry[Lot], "list_per_page", 2)


def test_below_the_cap_the_count_is_exact_filtered_or_not(
    support, small_cap, organization, other_organization
):
    for _ in range(3):
        grant(organization, 1)
    grant(other_organization, 1)
    response, queries = open_list(support, Lot)
    cl = response.context["cl"]
    assert (cl.result_count, cl.paginator.num_pages, cl.paginator.more) == (4, 2, False)
    assert "the first" not in cl.title
    # The count stopped reading after cap + 1 rows.
    assert any("COUNT(*)" in sql and "LIMIT 5" in sql for sql in queries)
    response, _ = open_list(support, Lot, {"organization": organization.pk})
    assert response.context["cl"].result_count == 3


def test_past_the_cap_the_list_pages_through_the_cap_and_says_so(support, small_cap, organization):
    for _ in range(7):
        grant(organization, 1)
    response, _ = open_list(support, Lot)
    cl = response.context["cl"]
    assert (cl.result_count, cl.paginator.num_pages, cl.paginator.more) == (4, 2, True)
    assert "the first 4 in this order" in response.content.decode()
    # The last page within the cap opens; past it, Django's own answer to a page out of range.
    assert support.get("/admin/credits/lot/", {"p": 2}).status_code == 200
    assert support.get("/admin/credits/lot/", {"p": 3}).status_code == 302


def test_recent_values_offer_the_kinds_of_recent_rows_and_filter_by_any(support):
    outbox.message_enqueue(key="a", to="a@x.test", subject="A", text="a", kind="reminder")
    outbox.message_enqueue(key="b", to="b@x.test", subject="B", text="b", kind="invitation")
    response, _ = open_list(support, OutboxMessage)
    choices = [
        choice["display"]
        for spec in response.context["cl"].filter_specs
        if getattr(spec, "parameter_name", "") == "kind"
        for choice in spec.choices(response.context["cl"])
    ]
    assert choices == ["All", "invitation", "reminder"]
    response, _ = open_list(support, OutboxMessage, {"kind": "reminder"})
    assert [m.recipient for m in response.context["cl"].result_list] == ["a@x.test"]


@pytest.mark.parametrize(
    "value", ["a\x00b", "x" * 10_000, str(2**63), "-1", "\u0661\u0662", ""], ids=repr
)
def test_hostile_filter_values_are_an_empty_list_or_a_redirect_never_an_error(
    support, organization, value
):
    grant(organization, 1)
    for url, parameter in [
        ("/admin/credits/lot/", "organization"),
        ("/admin/credits/holding/", "account__organization"),
        ("/admin/outbox/outboxmessage/", "kind"),
    ]:
        assert support.get(url, {parameter: value}).status_code in (200, 302), (url, parameter)
