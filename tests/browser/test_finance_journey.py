"""Issue 18, part 2 in a real browser: an admin opens the finance report from the Credits
page, reads the months and the chart, and downloads the CSV."""

from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from tests.browser.conftest import log_in


@pytest.mark.django_db(transaction=True)
def test_the_finance_report_shows_the_months_and_downloads_them(live_server, page: Page):
    call_command("seed_demo")
    base = live_server.url
    log_in(page, base, "admin@acme.example", DEMO_PASSWORD)
    page.goto(base + "/credits/")
    page.get_by_role("button", name="Finance report").click()
    expect(page.get_by_role("heading", name="Finance report")).to_be_visible()
    expect(page.get_by_test_id("finance-month").first).to_be_visible()
    expect(page.get_by_role("img", name="Prepaid balance at the end of each month")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV (every month)").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("month,opening credits,")
    assert len(lines) - 1 >= page.get_by_test_id("finance-month").count()
