"""The Credits page's history in Chromium, paged from row to row: Older and Newer swap the
table in place and change the address, Back and a reload show the same rows again, and a
filter chosen on a later page starts from that filter's newest rows."""

import re

import pytest
from playwright.sync_api import Page, expect

from credits import services
from tests.accounts.factories import PASSWORD
from tests.browser.conftest import log_in
from tests.credits.factories import grant, redeem

pytestmark = pytest.mark.django_db(transaction=True)


def _references(page: Page) -> list[str]:
    cells = page.locator("#history tbody tr td:nth-child(3)")
    return [text.split("\n")[0].strip() for text in cells.all_inner_texts()]


def test_history_pages_older_newer_back_and_filter(live_server, page: Page, organization, admin):
    for n in range(60):
        grant(organization, 1, reference=f"lot-{n:02}")
    redeem(services.pool_account(organization=organization), 1, reference="the one redemption")
    log_in(page, live_server.url, admin.email, PASSWORD)
    page.goto(f"{live_server.url}/credits/")

    first = _references(page)
    assert len(first) == 25 and first[0] == "the one redemption"
    page.get_by_test_id("history-older").click()
    expect(page).to_have_url(re.compile(r"before=\d+"))
    expect(page.locator("#history tbody tr").first).not_to_contain_text("the one redemption")
    second = _references(page)
    assert second[0] == "lot-35" and len(second) == 25
    page.get_by_test_id("history-older").click()
    expect(page.locator("#history tbody tr")).to_have_count(11)
    assert _references(page)[-1] == "lot-00"
    expect(page.get_by_test_id("history-older")).to_have_count(0)

    page.go_back()
    expect(page.locator("#history tbody tr").first).to_contain_text("lot-35")
    page.reload()
    assert _references(page) == second
    page.get_by_role("link", name="← Newer").click()
    expect(page.locator("#history tbody tr").first).to_contain_text("the one redemption")

    # A filter chosen on a later page: its own newest rows, not the page's cursor.
    page.get_by_test_id("history-older").click()
    expect(page).to_have_url(re.compile(r"before=\d+"))
    page.get_by_label("Kind").select_option("redeem")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#history")).to_contain_text("the one redemption")
