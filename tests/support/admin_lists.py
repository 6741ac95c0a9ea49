"""Open a Django admin list as support does and look at the SQL it ran: a list over a table
that grows with history must cost a page, whatever the table's size.

What gives a whole-table read away in the SQL, without a big table to time it on:
- a COUNT with no LIMIT (Django's paginator, or "N total" beside a filtered list);
- a DISTINCT over one column, or over dates, with no LIMIT (a list filter's choices from
  every row, a date hierarchy);
- a query of another table with no WHERE and no LIMIT (a related field's filter listing every
  organization or plan), the platform's own short catalogue excepted.
"""

import re

from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from config.admin import LargeTableAdmin

# Tables that do not grow with anyone's history: a filter may list them.
CATALOGUE_TABLES = {"billing_subscriptionplan", "billing_pricelist", "catalog_course"}

_FIRST_TABLE = re.compile(r'\bFROM "(\w+)"')
_ONE_COLUMN_DISTINCT = re.compile(r'SELECT DISTINCT "\w+"\."\w+" FROM')


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def large_table_models(app_label: str) -> list:
    """The app's models whose admin is a LargeTableAdmin."""
    return [
        model
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == app_label and isinstance(model_admin, LargeTableAdmin)
    ]


def organization_parameter(model) -> str | None:
    """The query parameter of the list's organization filter, if it has one."""
    model_admin = admin.site._registry[model]
    for list_filter in model_admin.list_filter:
        name = getattr(list_filter, "parameter_name", "")
        if name.endswith("organization"):
            return name
    return None


def open_list(client, model, params=None):
    """The list's page and the SQL it ran. Fails unless the page opened."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(changelist_url(model), params or {})
    assert response.status_code == 200, (model, params, response.status_code)
    return response, [query["sql"] for query in queries.captured_queries]


def whole_table_reads(queries: list[str], model) -> list[str]:
    own = model._meta.db_table

    def reads_a_whole_table(sql: str) -> bool:
        if " LIMIT " in sql:
            return False
        if "COUNT(" in sql or _ONE_COLUMN_DISTINCT.search(sql) or "DATE_TRUNC" in sql:
            return True
        table = _FIRST_TABLE.search(sql)
        other = table is not None and table.group(1) not in {own, *CATALOGUE_TABLES}
        return other and " WHERE " not in sql

    return [sql for sql in queries if reads_a_whole_table(sql)]


def assert_opens_filtered_or_not(client, model, organization) -> None:
    """The list opens unfiltered, searched, and filtered by the organization (when it has that
    filter), each without reading a whole table."""
    variants = [{}, {"q": "acme"}]
    if parameter := organization_parameter(model):
        variants.append({parameter: organization.pk})
    for params in variants:
        _, queries = open_list(client, model, params)
        assert whole_table_reads(queries, model) == [], (model.__name__, params)
