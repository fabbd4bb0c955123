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
    from playwright.sync_api import expect, sync_playwright

    # expect() waits 5 s by default: too short on a busy machine (a worker picking up a job).
    expect.set_options(timeout=30_000)

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


# Every page of a test's browser reports what the Content-Security-Policy refused to Python at
# once (a page navigated away from cannot be asked later).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.depotCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ` +
                           `${e.documentURI}: ${e.sample || ""}`);
});
"""


@pytest.fixture
def csp_violations(browser):
    """What the CSP refused in this test's pages (and console errors that say so); `page`
    fails the test at its end when any."""
    return []


@pytest.fixture
def page(browser, csp_violations):
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    context.expose_function("depotCspViolation", lambda text: csp_violations.append(text))
    context.add_init_script(REPORT_VIOLATIONS)
    context.on("console", lambda msg: msg.type == "error" and "Content Security Policy" in msg.text
               and csp_violations.append(msg.text))
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not csp_violations, f"the Content-Security-Policy refused: {csp_violations}"


def save_screenshot(page, name: str):
    """Saves docs/screenshots/<name>.png when DEPOT_SCREENSHOTS=1 (README's pictures)."""
    if os.environ.get("DEPOT_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture
def screenshot(page):
    """screenshot(name): save_screenshot of the test's `page`."""
    return lambda name: save_screenshot(page, name)
