"""Issue 18, part 5 in a real browser: support extends a lot's expiry and grants goodwill
credits in the Django admin, each with a reason; the organization's admin sees both in the
credit history."""

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD, SUPPORT_EMAIL
from accounts.models import Organization
from credits.audit import ledger_audit
from credits.models import Lot
from tests.browser.conftest import log_in


@pytest.mark.django_db(transaction=True)
def test_support_extends_a_lot_and_grants_goodwill_and_the_admin_sees_both(live_server, page: Page):
    call_command("seed_demo")
    base = live_server.url
    acme = Organization.objects.get(slug="acme")
    lot = Lot.objects.filter(organization=acme, expires_at__isnull=False).order_by("pk").first()

    page.goto(base + "/admin/login/")
    page.get_by_label("Email").fill(SUPPORT_EMAIL)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{base}/admin/credits/lot/?organization={acme.pk}")
    page.locator(f"input[name='_selected_action'][value='{lot.pk}']").check()
    page.get_by_label("Action:").select_option("extend_expiry")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_role("heading", name=f"Extend the expiry of lot {lot.pk}")).to_be_visible()
    page.get_by_label("New last usable day").fill("2028-06-30")
    page.get_by_label("Reason").fill("Their rollout moved to the summer")
    page.get_by_role("button", name="Extend the expiry").click()
    expect(page.get_by_text(f"Lot {lot.pk} is now usable through Jun 30, 2028.")).to_be_visible()

    page.goto(base + "/admin/accounts/organization/")
    page.locator(f"input[name='_selected_action'][value='{acme.pk}']").check()
    page.get_by_label("Action:").select_option("grant_goodwill")
    page.get_by_role("button", name="Go").click()
    page.get_by_label("Credits").fill("7")
    page.get_by_label("Reason").fill("Sorry for Tuesday's outage")
    page.get_by_role("button", name="Grant the credits").click()
    expect(page.get_by_text("7 goodwill credits granted to Acme Corp")).to_be_visible()

    page.context.clear_cookies()
    log_in(page, base, "admin@acme.example", DEMO_PASSWORD)
    page.goto(base + "/credits/")
    history = page.locator("#history")
    expect(history).to_contain_text("Goodwill credits")
    expect(history).to_contain_text("Sorry for Tuesday's outage")
    expect(history).to_contain_text("Expiry extended")
    assert ledger_audit().ok
