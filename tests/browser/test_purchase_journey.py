import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from credits.audit import ledger_audit


@pytest.mark.django_db(transaction=True)
def test_short_admin_buys_the_suggested_package_offline_and_comes_back(
    live_server, page: Page, settings
):
    # No Stripe key and DEBUG on: the clearly marked simulated checkout stands in for Stripe
    # and posts a signed event to the real webhook endpoint.
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    call_command("seed_demo")

    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.goto(live_server.url + "/billing/add-credits/?need=9200&next=/credits/")
    suggestion = page.get_by_test_id("suggestion")
    expect(suggestion).to_contain_text("9,356-credit package")
    expect(suggestion).to_contain_text("10% off")

    page.get_by_label("Credits").fill("2600")
    expect(page.get_by_test_id("quote")).to_contain_text("2,600 credits at $9.50 each")

    suggestion.get_by_role("button", name="Buy the 9,356-credit package").click()
    expect(page.get_by_text("SIMULATED CHECKOUT")).to_be_visible()
    page.get_by_role("button", name="Pay (simulated)").click()

    expect(page.get_by_test_id("purchase-paid")).to_contain_text("9,356 credits added")
    page.get_by_role("button", name="Continue where you were").click()
    expect(page).to_have_url(re.compile(r"/credits/$"))
    expect(page.get_by_role("cell", name="9,356").first).to_be_visible()
    report = ledger_audit()
    assert report.ok, report.violations
