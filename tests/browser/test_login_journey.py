import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.demo import DEMO_PASSWORD


@pytest.mark.django_db(transaction=True)
def test_demo_admin_logs_in_switches_organization_and_logs_out(live_server, page: Page):
    call_command("seed_demo")

    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()

    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text("Acme Corp")
    expect(page.get_by_text("You are admin here.")).to_be_visible()

    switcher = page.get_by_test_id("org-switcher")
    switcher.locator("summary").click()
    switcher.get_by_role("button", name=re.compile("Acme Labs")).click()
    expect(heading).to_have_text("Acme Labs")
    expect(page.get_by_text("You are now working in Acme Labs.")).to_be_visible()

    switcher.locator("summary").click()
    switcher.get_by_role("button", name=re.compile("Log out")).click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
