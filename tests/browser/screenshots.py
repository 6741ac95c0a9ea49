"""`make screenshots`: every page of every role at 1280 px and 390 px wide, written to
screenshots/ (git-ignored). Not part of the suite: its file name is not test_*.py, and the
Makefile names it explicitly. It uses the accessibility test's pages and demo data."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page

from accounts.demo import DEMO_PASSWORD
from tests.browser.conftest import log_in
from tests.browser.test_accessibility import (  # noqa: F401 (the fixture)
    DESKTOP,
    PHONE,
    _admin_pages,
    _manager_pages,
    demo,
)
from training.models import Enrollment

pytestmark = pytest.mark.django_db(transaction=True)

FOLDER = Path(os.environ.get("SCREENSHOTS_DIR", "screenshots"))


def _name(role: str, path: str, width: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "dashboard"
    return f"{role}-{slug}-{width}.png"


def _shoot(page: Page, base: str, role: str, paths: list[str]) -> None:
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        for path in paths:
            page.goto(base + path)
            page.screenshot(path=FOLDER / _name(role, path, size["width"]), full_page=True)


def test_screenshots(demo, page: Page):  # noqa: F811
    FOLDER.mkdir(parents=True, exist_ok=True)
    _shoot(page, demo, "anonymous", ["/accounts/login/"])
    log_in(page, demo, "admin@acme.example", DEMO_PASSWORD)
    _shoot(page, demo, "admin", _admin_pages())
    page.context.clear_cookies()
    log_in(page, demo, "manager@acme.example", DEMO_PASSWORD)
    _shoot(page, demo, "manager", _manager_pages())
    page.context.clear_cookies()
    learner = Enrollment.objects.filter(participant__user__isnull=False).first()
    log_in(page, demo, learner.participant.user.email, DEMO_PASSWORD)
    _shoot(page, demo, "learner", ["/", "/training/my/"])
    print(f"{len(list(FOLDER.glob('*.png')))} screenshots in {FOLDER.resolve()}")
