import csv
import datetime as dt
import io

import pytest
import time_machine
from django.urls import reverse

from credits import services
from credits.models import LedgerTransaction
from tests.accounts.factories import UserFactory
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, redeem

pytestmark = pytest.mark.django_db

URL = reverse("credits:overview")


@pytest.fixture
def pool(organization):
    return services.pool_account(organization=organization)


def test_cards_show_credits_assigned_available_and_expiring(admin_client, organization, pool):
    grant(organization, 100, days_ago=340)  # expires in 25 days
    grant(organization, 50)
    hold(pool, 5)
    page = admin_client.get(URL)
    balance = page.context["balance"]
    assert (balance.total, balance.held, balance.available, balance.expiring_soon) == (
        150,
        5,
        145,
        100,
    )
    assert b"card-alert" not in page.content


def test_total_turns_red_when_assigned_exceeds_credits(admin_client, organization, pool):
    grant(organization, 2)
    hold(pool, 5, allow_overage=True)
    page = admin_client.get(URL).content.decode()
    assert "card-alert" in page
    assert "Assigned credits exceed your credits" in page


def test_empty_ledger_says_what_to_do(admin_client):
    page = admin_client.get(URL).content.decode()
    assert "No credits yet." in page
    assert "No credit movements yet." in page


def test_history_filters_by_kind_and_htmx_gets_only_the_table(admin_client, organization, pool):
    grant(organization, 10, reference="inv-42")
    redeem(pool, 3, reference="Plan: onboarding")
    full = admin_client.get(URL, {"kind": "redeem"}).content.decode()
    assert "Plan: onboarding" in full
    assert "inv-42</td>" not in full.split('id="history"')[1]
    partial = admin_client.get(
        URL, {"kind": "grant"}, headers={"HX-Request": "true", "HX-Target": "history"}
    ).content.decode()
    assert "<h1>" not in partial
    assert "inv-42" in partial and "Plan: onboarding" not in partial


def test_history_filters_by_date_range(admin_client, organization, pool):
    with time_machine.travel(dt.datetime(2026, 3, 10, 15, tzinfo=dt.UTC)):
        grant(organization, 10, reference="march")
    with time_machine.travel(dt.datetime(2026, 6, 10, 15, tzinfo=dt.UTC)):
        grant(organization, 10, reference="june")
        page = admin_client.get(URL, {"start": "2026-06-01", "end": "2026-06-30"})
    rows = [txn.reference for txn in page.context["page"].rows]
    assert rows == ["june"]


def test_balance_as_of_a_past_date(admin_client, organization, pool):
    with time_machine.travel(dt.datetime(2026, 3, 10, 15, tzinfo=dt.UTC)):
        grant(organization, 10)
    with time_machine.travel(dt.datetime(2026, 4, 10, 15, tzinfo=dt.UTC)):
        redeem(pool, 4)
        page = admin_client.get(URL, {"as_of": "2026-03-31"}).content.decode()
    assert "your pool held <strong>10</strong> credits" in page


def test_balance_as_of_counts_the_pool_like_every_other_figure(admin_client, organization, pool):
    # Credits earmarked for a course are not in the pool: the figure must not count them.
    with time_machine.travel(dt.datetime(2026, 3, 10, 15, tzinfo=dt.UTC)):
        grant(organization, 10)
        course = services.course_account(organization=organization, course=CourseFactory())
        services.credits_transfer(source=pool, destination=course, quantity=10, idempotency_key="e")
    with time_machine.travel(dt.datetime(2026, 4, 10, 15, tzinfo=dt.UTC)):
        page = admin_client.get(URL, {"as_of": "2026-03-31"}).content.decode()
    assert "your pool held <strong>0</strong> credits" in page


def _references(response) -> list[str]:
    return [txn.reference for txn in response.context["page"].rows]


def test_history_pages_go_older_and_back_newer(admin_client, organization):
    # Ten transactions share one instant: the id breaks the tie, so none is shown twice or
    # skipped at a page's edge.
    with time_machine.travel(dt.datetime(2026, 3, 10, 15, tzinfo=dt.UTC), tick=False):
        for n in range(10):
            grant(organization, 1, reference=f"lot-{n:02}")
    with time_machine.travel(dt.datetime(2026, 3, 11, 15, tzinfo=dt.UTC)):
        for n in range(10, 55):
            grant(organization, 1, reference=f"lot-{n:02}")
    newest_first = [f"lot-{n:02}" for n in range(54, -1, -1)]

    first = admin_client.get(URL)
    assert _references(first) == newest_first[:25]
    assert first.context["page"].newer is None
    seen, page = _references(first), first
    while page.context["page"].older:
        page = admin_client.get(URL, {"before": page.context["page"].older})
        seen += _references(page)
    assert seen == newest_first  # every row once, in order
    assert _references(page) == newest_first[50:]

    back = admin_client.get(URL, {"after": page.context["page"].newer})
    assert _references(back) == newest_first[25:50]
    back = admin_client.get(URL, {"after": back.context["page"].newer})
    assert _references(back) == newest_first[:25]
    assert back.context["page"].newer is None
    assert b"Older" in back.content and b"Newer" not in back.content


def test_history_cursor_of_another_organization_starts_from_the_newest(
    admin_client, organization, other_organization
):
    grant(organization, 1, reference="ours")
    grant(other_organization, 1, reference="theirs")
    theirs = LedgerTransaction.objects.get(organization=other_organization)
    for cursor in ({"before": theirs.pk}, {"after": theirs.pk}, {"before": "x"}, {"after": 2**63}):
        response = admin_client.get(URL, cursor)
        assert response.status_code == 200
        assert _references(response) == ["ours"]


def test_csv_export_streams_the_filtered_history(admin_client, organization, pool):
    grant(organization, 10, reference="inv-1")
    redeem(pool, 3, reference="Plan A")
    response = admin_client.get(reverse("credits:history_csv"), {"kind": "redeem"})
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["date", "kind", "reference", "requested", "net change"]
    assert [(r[1], r[2], r[4]) for r in rows[1:]] == [("Redeemed", "Plan A", "-3")]


def test_only_admins_see_credits(manager_client, learner_client):
    assert manager_client.get(URL).status_code == 403
    assert learner_client.get(URL).status_code == 403


def test_an_outsider_sees_only_their_own_organization(
    outsider_client, organization, other_organization
):
    grant(organization, 10, reference="acme-secret-invoice")
    grant(other_organization, 3, reference="globex-invoice")
    page = outsider_client.get(URL).content.decode()
    assert "globex-invoice" in page and "acme-secret-invoice" not in page
    csv_body = b"".join(outsider_client.get(reverse("credits:history_csv")).streaming_content)
    assert b"acme-secret-invoice" not in csv_body


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_and_numbers_stay_numbers(
    admin_client, organization, pool
):
    grant(organization, 10, reference='=HYPERLINK("http://x","y")')
    redeem(pool, 5, reference="+cmd|' /C calc'!A0")
    grant(organization, 1, reference="-2+3")
    grant(organization, 1, reference="\t=1+1")
    grant(organization, 1, reference="\r=1+1")
    staff = UserFactory(email="support@cac.test", is_staff=True)
    services.credits_adjust(
        account=pool, quantity=-2, reason="@SUM(A1:A9)", actor=staff, idempotency_key="adj-1"
    )
    response = admin_client.get(reverse("credits:history_csv"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r[2], r[4], r[7]) for r in rows[1:]] == [
        ('\'=HYPERLINK("http://x","y")', "10", ""),
        ("'+cmd|' /C calc'!A0", "-5", ""),
        ("'-2+3", "1", ""),
        ("'\t=1+1", "1", ""),
        ("'\r=1+1", "1", ""),
        ("support adjustment", "-2", "'@SUM(A1:A9)"),
    ]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1", "'+1"),
        ("-5", "'-5"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Plan: =1", "Plan: =1"),
        ("", ""),
        (-5, -5),
        (0, 0),
        (None, None),
    ],
)
def test_neutralise_quotes_only_text_that_starts_like_a_formula(value, cell):
    from config.csv_cells import neutralise

    assert neutralise(value) == cell


def test_the_credits_page_lists_current_lots_in_pages_and_past_ones_behind_a_link(
    admin_client, organization
):
    expired = grant(organization, 3, days_ago=400)
    services.lots_expire()
    for n in range(55):
        grant(organization, 1, days_ago=n)
    url = reverse("credits:overview")

    page = admin_client.get(url).content.decode()
    assert page.count('data-testid="lot-usable-through"') == 50
    # Not "of 55": the lots are not counted, however many a big organization has.
    assert "Lots 1\N{EN DASH}50<" in page and "lots_page=2" in page
    assert "(expired)" not in page
    second = admin_client.get(url, {"lots_page": 2}).content.decode()
    assert second.count('data-testid="lot-usable-through"') == 5
    assert "Lots 51\N{EN DASH}55<" in second and "lots_page=3" not in second
    # An old link past the last page (lots expired since) shows the first page.
    beyond = admin_client.get(url, {"lots_page": 9}).content.decode()
    assert beyond.count('data-testid="lot-usable-through"') == 50

    past = admin_client.get(url, {"lots": "past"}).content.decode()
    assert past.count('data-testid="lot-usable-through"') == 1
    assert "(expired)" in past
    expired.refresh_from_db()
    assert expired.expired_at is not None
    # Odd values are the default listing, not an error.
    assert admin_client.get(url, {"lots": "x", "lots_page": "-3"}).status_code == 200


@pytest.mark.parametrize("name", ["credits:overview", "catalog:index"])
def test_pages_with_pushed_fragments_vary_on_htmx(admin_client, name):
    # The fragment and the page share an address: caches must tell them apart.
    for headers in ({}, {"HX-Request": "true"}):
        response = admin_client.get(reverse(name), headers=headers)
        assert "HX-Request" in response.get("Vary", "")
