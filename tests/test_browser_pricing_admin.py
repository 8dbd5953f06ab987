"""A real browser drives the pricing-config admin: log in, hit the overlap error, save a valid config.

Headless Debian Chromium (/usr/bin/chromium, apt packages `chromium` and `chromium-driver`) through
Playwright for Python, never a downloaded browser. Without Chromium the test skips, unless CI is set:
then a missing browser is a failure, so CI cannot pass by skipping. Screenshots go to
test-output/browser/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from accounts.models import User
from billing.models import PricingConfig

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parent.parent / "test-output" / "browser"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (requirements-dev.txt)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def chromium_page(monkeypatch):
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            browser.close()


def test_pricing_config_admin_in_chromium(live_server, chromium_page):
    User.objects.create_superuser(email="lead@example.com", password="correct horse")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page = chromium_page

    page.goto(f"{live_server.url}/admin/login/?next=/admin/billing/pricingconfig/add/")
    page.fill("#id_username", "lead@example.com")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_selector("#pricingconfig_form")

    # Overlaps the default basic config (2020-01-01, open-ended): refused with the form error.
    page.fill("#id_name", "Basic spring price")
    page.select_option("#id_plan", "basic")
    page.fill("#id_base_price", "10.99")
    page.fill("#id_effective_from_0", "2026-03-01")
    page.fill("#id_effective_from_1", "00:00:00")
    page.click("input[name=_save]")
    error = page.wait_for_selector(".errornote, ul.errorlist.nonfield")
    assert error is not None
    assert "already covers part of this window" in page.content()
    page.screenshot(path=str(OUTPUT / "pricing_config_overlap_error.png"), full_page=True)
    assert not PricingConfig.objects.filter(name="Basic spring price").exists()

    # A variant of its own does not overlap: saved.
    page.fill("#id_variant_id", "spring-box")
    page.fill("#id_variant_name", "Spring box")
    page.click("input[name=_save]")
    page.wait_for_selector("ul.messagelist li.success")
    page.screenshot(path=str(OUTPUT / "pricing_config_saved.png"), full_page=True)
    saved = PricingConfig.objects.get(name="Basic spring price")
    assert (saved.plan, saved.variant_id, str(saved.base_price)) == ("basic", "spring-box", "10.99")
    assert saved.created_by.email == "lead@example.com"
    assert (OUTPUT / "pricing_config_saved.png").stat().st_size > 0
