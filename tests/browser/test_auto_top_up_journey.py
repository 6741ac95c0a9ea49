"""Issue 18, part 1 in a real browser with the simulated checkout: auto top-up set up with
a card that is declined pauses it (the dashboard says so), and set up again with a card that
pays buys the credits by itself, once."""

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD
from accounts.models import Organization
from billing.models import Purchase
from credits import selectors
from credits.audit import ledger_audit
from tests.browser.conftest import log_in


@pytest.mark.django_db(transaction=True)
def test_a_declined_card_pauses_auto_top_up_and_a_good_one_buys_by_itself(
    live_server, page: Page, settings
):
    settings.DEBUG, settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = True, "", ""
    call_command("seed_demo")
    base = live_server.url
    acme = Organization.objects.get(slug="acme")
    before = selectors.organization_balance(organization=acme).available
    log_in(page, base, "admin@acme.example", DEMO_PASSWORD)

    def set_up(card: str) -> None:
        page.goto(base + "/billing/")
        page.get_by_label("When available credits fall below").fill(str(before + 1))
        page.get_by_label("Buy this many credits").fill("10")
        page.get_by_label("At most this many credits a month").fill("30")
        page.get_by_role("button", name="Set up with a card").click()
        expect(page.get_by_text("SIMULATED CHECKOUT")).to_be_visible()
        page.get_by_label(card).check()
        page.get_by_role("button", name="Save card (simulated)").click()

    set_up("A card that is declined")
    expect(page.get_by_test_id("auto-top-up-paused")).to_contain_text("the card was declined")
    page.goto(base + "/")
    expect(page.get_by_test_id("auto-top-up-paused-banner")).to_be_visible()
    assert selectors.organization_balance(organization=acme).available == before

    set_up("A card that pays")
    expect(page.get_by_text("Card saved: auto top-up is on.")).to_be_visible()
    expect(page.get_by_test_id("auto-top-up-status")).to_contain_text("10 of at most 30")
    assert selectors.organization_balance(organization=acme).available == before + 10
    assert list(Purchase.objects.filter(automatic=True).values_list("status", flat=True)) == [
        "paid",
        "failed",
    ]
    page.goto(base + "/")
    expect(page.get_by_test_id("auto-top-up-paused-banner")).to_have_count(0)
    assert ledger_audit().ok
