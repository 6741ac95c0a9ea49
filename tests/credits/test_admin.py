"""Support's ledger lists: read-only as ever, and a page costs a page however long the
history (no count, distinct or listing over a whole table, no query per row)."""

import pytest
from django.contrib import admin
from django.urls import reverse

from credits import services
from credits.models import LedgerEntry, LedgerTransaction, Lot
from tests.accounts.factories import OrganizationFactory, UserFactory
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, key, redeem
from tests.support.admin_lists import (
    assert_opens_filtered_or_not,
    changelist_url,
    large_table_models,
    open_list,
)

pytestmark = pytest.mark.django_db

LEDGER_MODELS = large_table_models("credits")
# The ledger lists' only actions: support's tools (credits/support.py).
SUPPORT_ACTIONS = {Lot: ["extend_expiry"]}


@pytest.fixture
def support(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _history(organization, rounds=1):
    """A little of everything the ledger writes: lots, redemptions, holds, a transfer."""
    pool = services.pool_account(organization=organization)
    for _ in range(rounds):
        grant(organization, 10)
        redeem(pool, 2)
        hold(pool, 1)
        services.hold_capture(hold=hold(pool, 1))
        course = services.course_account(organization=organization, course=CourseFactory())
        services.credits_transfer(
            source=pool, destination=course, quantity=1, idempotency_key=key("t")
        )


def test_every_ledger_model_has_a_large_table_admin():
    names = {model.__name__ for model in LEDGER_MODELS}
    assert {"Lot", "Holding", "LedgerTransaction", "LedgerEntry", "Hold", "Overage"} <= names


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=lambda m: m.__name__)
def test_support_opens_each_ledger_list_filtered_or_not_without_reading_whole_tables(
    support, organization, other_organization, model
):
    _history(organization)
    _history(other_organization)
    assert_opens_filtered_or_not(support, model, organization)


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=lambda m: m.__name__)
def test_a_ledger_list_costs_the_same_queries_with_more_rows(support, organization, model):
    _history(organization)
    _, before = open_list(support, model)
    _history(organization, rounds=3)
    _, after = open_list(support, model)
    assert len(after) == len(before)


def test_the_organization_filter_shows_the_one_chosen_and_filters(
    support, organization, other_organization
):
    ours = grant(organization, 5)
    theirs = grant(other_organization, 5)
    response, _ = open_list(support, Lot, {"organization": organization.pk})
    lots = list(response.context["cl"].result_list)
    assert lots == [ours] and theirs not in lots
    page = response.content.decode()
    # The chosen organization is named in the filter; the other is not offered.
    assert "Acme Corp" in page and "Globex" not in page
    # Nonsense is an empty list, not an error.
    response, _ = open_list(support, Lot, {"organization": "x" * 40})
    assert list(response.context["cl"].result_list) == []


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=lambda m: m.__name__)
def test_the_ledger_stays_read_only(support, organization, model):
    _history(organization)
    meta = model._meta
    assert support.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add")).status_code == 403
    response, _ = open_list(support, model)
    # No action but support's own tools, which write through credits/services.py: Django
    # offers "delete selected" only to who may delete.
    form = response.context["action_form"]
    offered = [] if form is None else [name for name, _ in form.fields["action"].choices if name]
    assert offered == SUPPORT_ACTIONS.get(model, [])
    row = model._default_manager.first()
    if row is not None:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk])
        page = support.get(url)
        assert page.status_code == 200
        assert b'type="submit" value="Save"' not in page.content


def test_the_lists_show_newest_first(support, organization):
    first, second = grant(organization, 1), grant(organization, 2)
    response = support.get(changelist_url(Lot))
    assert list(response.context["cl"].result_list)[:2] == [second, first]


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=lambda m: m.__name__)
def test_a_nul_in_a_filter_or_search_is_refused_plainly(support, organization, model):
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    for name in ("q", "kind", "status", "organization"):
        response = support.get(url, {name: "a\x00b", "o": "1"}, follow=True)
        assert response.status_code == 200
        assert response.redirect_chain[-1][0] == f"{url}?o=1"  # the rest of the query kept
        assert f"Ignored {name}: it contained a NUL character" in response.content.decode()


def test_entries_filtered_by_organization_are_that_organizations_only(
    support, organization, other_organization
):
    _history(organization)
    _history(other_organization)
    response, _ = open_list(support, LedgerEntry, {"account__organization": organization.pk})
    shown = list(response.context["cl"].result_list)
    assert shown and {entry.account.organization_id for entry in shown} == {organization.pk}
    response, _ = open_list(support, LedgerEntry, {"account__organization": 10**9})
    assert list(response.context["cl"].result_list) == []


@pytest.mark.parametrize("limit", [5_000, 0], ids=["ids first", "join past the limit"])
@pytest.mark.parametrize("model", [LedgerEntry, Lot, LedgerTransaction], ids=lambda m: m.__name__)
def test_a_search_by_organization_name_finds_that_organizations_rows_only(
    support, organization, other_organization, model, limit, monkeypatch
):
    monkeypatch.setattr(admin.site._registry[model], "search_ids_limit", limit)
    _history(organization)
    _history(other_organization)

    def organizations(search: str) -> set[int]:
        response, _ = open_list(support, model, {"q": search})
        return {_organization_of(row) for row in response.context["cl"].result_list}

    assert organizations("acme") == {organization.pk}
    assert organizations('"Acme Corp"') == {organization.pk}
    assert organizations("corp acme") == {organization.pk}  # every word, in any order
    assert organizations("globex") == {other_organization.pk}
    assert organizations("initech") == set()
    # "Acme" names two organizations, "Labs" one of them: every word narrows the rows.
    labs = OrganizationFactory(name="Acme Labs", slug="acme-labs")
    _history(labs)
    assert organizations("acme") == {organization.pk, labs.pk}
    assert organizations("acme labs") == {labs.pk}
    assert organizations("labs globex") == set()


def _organization_of(row) -> int:
    if isinstance(row, LedgerEntry):
        return row.account.organization_id
    return row.organization_id


def test_a_search_by_organization_name_reads_the_entries_by_account(
    support, organization, other_organization
):
    # A small organization beside a big one: joining each entry to its organization's name
    # walked the whole table newest-first until a page matched. The accounts are found first.
    _history(organization)
    response, queries = open_list(support, LedgerEntry, {"q": "acme"})
    assert response.context["cl"].result_list
    listing = [sql for sql in queries if 'FROM "credits_ledgerentry"' in sql and "LIMIT" in sql]
    assert listing and all('"accounts_organization"."name"' not in sql for sql in listing)


@pytest.mark.parametrize("model", [LedgerEntry, Lot, LedgerTransaction], ids=lambda m: m.__name__)
def test_a_search_of_only_spaces_lists_everything_plainly(support, organization, model):
    _history(organization)
    response, _ = open_list(support, model, {"q": "   "})
    assert response.status_code == 200 and list(response.context["cl"].result_list)
