"""Keyboard only, in Chromium: two courses into the cart, seats changed, checkout, people
added, Confirm users. After every step the focus is on what changed (the box just edited, or
the message saying what happened), never dropped to the top of the page."""

import datetime as dt

import pytest
from playwright.sync_api import Page, expect

from catalog.models import Course
from tests.accounts.factories import PASSWORD
from tests.browser.conftest import log_in
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from training.models import Enrollment, TrainingPlan

pytestmark = pytest.mark.django_db(transaction=True)


def focused(page: Page) -> str:
    """What has the focus: its text, or its accessible label for a box."""
    return page.evaluate(
        "(() => { const e = document.activeElement;"
        " return e === document.body ? '<body>' :"
        " (e.getAttribute('aria-label') || e.textContent || '').trim(); })()"
    )


def test_cart_to_confirm_with_the_keyboard_keeps_the_focus_on_what_changed(
    live_server, page: Page, organization, admin
):
    grant(organization, 50)
    first, second = LevelFactory(name="Basics", credit_cost=2), LevelFactory(credit_cost=1)
    log_in(page, live_server.url, admin.email, PASSWORD)

    for level, seats in ((first, "2"), (second, "3")):
        page.goto(f"{live_server.url}/catalog/courses/{level.course.slug}/")
        box = page.get_by_label(f"Seats for {level.name}")
        box.focus()
        page.keyboard.press("Control+A")
        page.keyboard.type(seats)
        page.keyboard.press("Tab")  # to Add to cart
        page.keyboard.press("Enter")
        expect(page.locator("#added .message")).to_be_focused()
        assert f"{level} is in your cart ({seats} seats)." in focused(page)

    # Seats changed in the cart: the cart is sent when the box is left and comes back
    # whole; the focus is where the keyboard had taken it, on the line's Remove button.
    page.goto(f"{live_server.url}/catalog/cart/")
    seats_box = page.get_by_label(f"Seats of {first}")
    seats_box.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("4")
    page.keyboard.press("Tab")  # "change": the cart is sent and swapped
    expect(page.get_by_test_id("cart-total")).to_have_text("11")
    expect(page.get_by_role("button", name=f"Remove {first}")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_label(f"Seats of {first}")).to_be_focused()

    # Checkout by keyboard: the plan page opens on its message.
    page.get_by_label("Plan name").focus()
    page.keyboard.type("Keyboard plan")
    page.keyboard.press("Tab")
    start = dt.date.today() + dt.timedelta(days=7)
    page.keyboard.type(start.strftime("%m%d%Y"))
    page.keyboard.press("Enter")  # submits the checkout form
    expect(page.locator("#messages .message")).to_be_focused()
    assert "Draft plan created" in focused(page)

    # Add people, then Confirm users: each answer's message takes the focus.
    page.get_by_label("Email addresses (one per line, or separated by commas)").focus()
    page.keyboard.type("ana@acme.test, ben@acme.test")
    page.keyboard.press("Tab")  # the CSV file box
    page.keyboard.press("Tab")  # Add people
    assert focused(page) == "Add people"
    page.keyboard.press("Enter")
    expect(page.locator("#plan-body .message").first).to_be_focused()
    assert "Added 2 people." in focused(page)

    page.get_by_test_id("confirm-users").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#plan-body .message").first).to_be_focused()
    assert "2 people confirmed" in focused(page)
    plan = TrainingPlan.objects.get(name="Keyboard plan")
    assert Enrollment.objects.filter(participant__plan=plan).count() == 4  # 2 people, 2 levels
    assert Course.objects.count() == 2
