"""Browser tests: the console served by a real gunicorn on a loopback port, driven by Playwright in
Debian's Chromium (never a downloaded browser). Jobs run on a real `rq worker` process."""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(worker_env, tmp_path):
    """Base URL of gunicorn serving wsgi:app with this test's settings; stopped afterwards."""
    port = _free_port()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen(
        [gunicorn, "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--workers", "1",
         "--threads", "4", "--no-control-socket", "wsgi:app"],
        env=worker_env, cwd=str(BASE_DIR), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/login", timeout=2).close()
            break
        except OSError:  # refused, reset, or a read that timed out while gunicorn starts
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                raise AssertionError(
                    "gunicorn did not start:\n" + (tmp_path / "gunicorn.log").read_text())
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


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
