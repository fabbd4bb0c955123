"""Browser tests: the console served by a real gunicorn on a loopback port (`live_server`, in
tests/conftest.py), driven by Playwright in Debian's Chromium (never a downloaded browser). Jobs run
on a real `rq worker` process."""
import os

import pytest

from portal.config import BASE_DIR

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = BASE_DIR / "docs" / "screenshots"


def _require_browser():
    """CI installs Debian's chromium (.ci/run); elsewhere a missing browser skips, loudly."""
    if os.path.exists(CHROMIUM):
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    """screenshot(name): saves docs/screenshots/<name>.png when DEPOT_SCREENSHOTS=1 (README's pictures)."""
    def _shot(name: str):
        if os.environ.get("DEPOT_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    return _shot
