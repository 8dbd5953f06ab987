"""A real browser drives the pricing-config admin: log in, hit the overlap error, save a valid config;
and the admin as `manage.py serve` runs it (gunicorn, static files by WhiteNoise) is styled and its
pricing-config list fits a 1400 px window. (pytest-django's live_server serves static files itself,
so only a real `serve` shows what the tester saw.)

Headless Debian Chromium (/usr/bin/chromium, apt packages `chromium` and `chromium-driver`) through
Playwright for Python, never a downloaded browser. Without Chromium the test skips, unless CI is set:
then a missing browser is a failure, so CI cannot pass by skipping. Screenshots go to
test-output/browser/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from accounts.models import User
from billing.models import PricingConfig
from tests.dbs import run_manage, start_manage
from tests.helpers import free_port, serving_env, wait_until_listening

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
VIEWPORT = {"width": 1400, "height": 900}  # the tester's window
HEADERS = ["Name", "Plan", "Variant", "Prices", "Window", "Active"]


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
        page = browser.new_page(viewport=VIEWPORT)
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
    assert_overlap_marks_the_date_fields(page)
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


def assert_overlap_marks_the_date_fields(page) -> None:
    """The 2026-03-01, open-ended window starts inside the default basic config and never ends: the
    error shows in both date rows, beside their inputs, naming the clash."""
    for field in ("effective_from", "effective_until"):
        row = page.locator(f".form-row.field-{field}")
        note = row.locator("ul.errorlist")
        assert note.is_visible(), field
        assert "Overlaps the active config 'Default pricing: basic'" in note.inner_text()
        note_box, input_box = note.bounding_box(), row.locator(f"#id_{field}_0").bounding_box()
        assert abs(note_box["y"] - input_box["y"]) < 80, (field, note_box, input_box)  # in the row, not far above


def login(page, base: str, email: str, password: str, next_url: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_url}")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


SEED = """
import datetime
from decimal import Decimal
from accounts.models import User
from billing.models import PricingConfig
User.objects.create_superuser(email="lead@example.com", password="correct horse")
utc = datetime.UTC
PricingConfig.objects.create(
    name="Premium chef's table, family size, 2026", plan="premium", variant_id="family-chef-table",
    variant_name="Family chef's table", currency="EUR", base_price=Decimal("129.99"),
    delivery_fee=Decimal("12.50"), tax_rate=Decimal("0.0725"), discount_rate=Decimal("0.125"),
    effective_from=datetime.datetime(2026, 1, 1, tzinfo=utc),
    effective_until=datetime.datetime(2026, 12, 31, 18, 30, tzinfo=utc),
)
PricingConfig.objects.create(
    name="Standard weekend box (draft)", plan="standard", variant_id="weekend-box", base_price=Decimal("24.00"),
    is_active=False, effective_from=datetime.datetime(2027, 1, 1, tzinfo=utc),
)
"""


@pytest.mark.slow
def test_admin_under_serve_is_styled_and_the_pricing_list_fits_1400px(tmp_path, chromium_page):
    """What the tester saw: the admin of a server started as the README says, in a 1400 px window."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    port = free_port()
    env = serving_env(tmp_path)
    server = start_manage(url, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1", env=env)
    try:
        wait_until_listening(server, port)
        seeded = run_manage(url, "shell", "-c", SEED, env=env)
        assert seeded.returncode == 0, seeded.stderr
        page = chromium_page
        base = f"http://127.0.0.1:{port}"
        login(page, base, "lead@example.com", "correct horse", "/admin/billing/pricingconfig/")
        page.wait_for_selector("#result_list")

        # Styled: base.css loaded and applied (unstyled, the header has the browser's transparent background).
        sheets = page.evaluate("[...document.styleSheets].map(s => [s.href, s.cssRules.length])")
        assert any(href and href.endswith("/admin/css/base.css") and rules > 100 for href, rules in sheets), sheets
        header_bg = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
        assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent"), header_bg
        # changelists.css: the filters stand beside the list, not below it.
        filters = page.locator("#changelist-filter").bounding_box()
        results = page.locator("#result_list").bounding_box()
        assert filters["x"] >= results["x"] + results["width"] and filters["y"] < results["y"] + results["height"]

        # Nothing cut: the table is no wider than its container, the page does not scroll sideways,
        # and every column header is on screen.
        widths = page.evaluate(
            """() => {
                const results = document.querySelector('#changelist-form .results');
                const table = document.querySelector('#result_list');
                return {scroll: results.scrollWidth, client: results.clientWidth,
                        table: table.getBoundingClientRect().right, page: document.documentElement.scrollWidth,
                        viewport: document.documentElement.clientWidth};
            }"""
        )
        assert widths["scroll"] <= widths["client"], widths
        assert widths["table"] <= widths["viewport"] and widths["page"] <= widths["viewport"], widths
        for text in HEADERS:
            header = page.locator("#result_list thead th", has_text=text).first
            assert header.is_visible(), text
            box = header.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"], (text, box)
        row = page.locator("#result_list tbody tr", has_text="Premium chef")
        assert "EUR 129.99 + 12.50 delivery, tax 7.25%, -12.5%" in row.inner_text()
        window = row.locator("td.field-window span")
        assert window.inner_text() == "2026-01-01 → 2026-12-31 18:30"
        line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('td.field-window')).lineHeight)")
        assert window.bounding_box()["height"] < 1.5 * line  # one line, not broken at a hyphen
        page.screenshot(path=str(OUTPUT / "pricing_config_list_1400.png"), full_page=True)

        # The overlap error beside the date fields, on the served admin too.
        page.goto(f"{base}/admin/billing/pricingconfig/add/")
        page.fill("#id_name", "Basic spring price")
        page.select_option("#id_plan", "basic")
        page.fill("#id_base_price", "10.99")
        page.fill("#id_effective_from_0", "2026-03-01")
        page.fill("#id_effective_from_1", "00:00:00")
        page.click("input[name=_save]")
        page.wait_for_selector("ul.errorlist.nonfield")
        assert_overlap_marks_the_date_fields(page)
        page.screenshot(path=str(OUTPUT / "pricing_config_overlap_error_served.png"), full_page=True)
    finally:
        server.terminate()
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
