"""Copy to… in a real browser: tick images, see Seattle's box ticked and an offline DP's greyed
with why, watch each copy's bar reach 100% under a note that follows them, and see the status turn
`current` at Seattle and in the status matrix, without a reload; then the S3 Test connection
button busy while a slow endpoint answers."""
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.services import distribution_points as dps
from portal.services import dp_management, notifications
from portal.services.actors import Actor
from tests import factories
from tests.helpers import run_worker, sign_in
from tests.node_fixtures import KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MB = 1024 * 1024


@pytest.fixture
def config_overrides():
    return {"DEPOT_COPY_CHUNK": 256 * 1024}


class _SlowS3(BaseHTTPRequestHandler):
    """An S3 endpoint that takes a second and a half to refuse every request."""

    def _refuse(self):
        time.sleep(1.5)
        body = b"<Error><Code>AccessDenied</Code><Message>denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_s3():
    """The URL of a _SlowS3 on a loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_copy_to_a_dp_node_with_progress(app, central, node, live_server, start_worker, page,
                                         screenshot, slow_s3):
    """Can an admin tick two images, copy them to a DP node (its box ticked, an offline DP's
    greyed with why), watch the progress bars fill with what crossed the network under a note
    that follows them to "done", see them current at the DP and in the status matrix, and what
    copying the third would send? And is the S3 Test connection button busy while a slow
    endpoint answers (one page session for both, browser tests being dear)?"""
    admin = factories.make_user(role="admin", email="admin@example.com")
    actor = Actor(admin, via="console")
    for name in ("Win11-23H2", "Win10-22H2", "Server2025"):
        factories.write_file(central.root, f"Images/{name}.wim", os.urandom(3 * MB))
    dps.request_rescan(central, actor)
    seattle = dp_management.add_local(actor, "Seattle", node.url, KEY, "Seattle office",
                                      allow_plain_http=True)
    run_worker()
    boston = factories.add_dp("Boston")
    notifications.set_dp_status(boston, "offline", "does not answer")
    db.session.commit()
    # 2 MiB/s, so the bars are seen moving.
    dp_management.update_dp(actor, seattle, {"bandwidth_limit": 2 * MB})
    start_worker()

    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Images").click()
    page.evaluate("window.depotNoReload = true")
    for name in ("Win11-23H2", "Win10-22H2"):
        page.get_by_label(f"Select {name}.wim").check()
    targets = page.locator("#copy-form fieldset.copy-targets")
    expect(targets.get_by_role("checkbox", name=re.compile("^Seattle"))).to_be_checked()
    expect(targets.get_by_role("checkbox", name=re.compile("^Boston"))).to_be_disabled()
    expect(targets.locator('label[data-dp="Boston"]')).to_contain_text(
        re.compile(r"offline since \d\d:\d\d UTC"))
    page.get_by_role("button", name="Copy to…").click()

    bars = page.locator("#copy-jobs div.job")
    expect(bars).to_have_count(2)
    expect(bars.first).to_contain_text("Copy to Seattle")
    note = page.locator("#copy-jobs .started-note")
    expect(page.locator("#copy-jobs div.job[data-state=running]").first).to_be_visible(timeout=30_000)
    # Beside the bar, what crossed the network (a first copy: nothing to reuse yet).
    network = page.locator("#copy-jobs div.job[data-state=running] .copy-network").first
    expect(network).to_contain_text(re.compile(r"^3\.0 MiB: .* sent, .* reused$"))
    screenshot("copy-in-progress")
    for i in range(2):
        expect(bars.nth(i)).to_have_attribute("data-state", "succeeded", timeout=60_000)
        expect(bars.nth(i).locator("progress")).to_have_attribute("value", "100")
        expect(bars.nth(i)).to_contain_text("3.0 MiB: 3.0 MiB sent, 0 B reused")
    expect(note).to_have_text("2 copies to Seattle done")  # it follows the jobs to their end
    assert page.evaluate("window.depotNoReload") is True

    page.locator("#dp-switcher").select_option(label="Seattle (Seattle office)")
    expect(page.get_by_role("heading", name="Images at Seattle")).to_be_visible()
    for name, status in (("Win11-23H2", "current"), ("Win10-22H2", "current"),
                         ("Server2025", "missing")):
        row = page.locator(f'tr.asset[data-key="Images/{name}.wim"]')
        expect(row.locator(".badge")).to_have_text(status)
    screenshot("images-at-seattle")
    page.goto(f"{live_server}/distribution-points/")
    copy_missing = page.locator(f"#dp-{seattle.id}").get_by_role("button",
                                                                name="Copy what is missing")
    expect(copy_missing).to_have_text("Copy what is missing or outdated (about 3.0 MiB to send)")
    page.goto(f"{live_server}/status/")
    expect(page.locator(f'tr[data-key="Images/Win11-23H2.wim"] [data-dp="{seattle.id}"]')).to_have_text("current")
    screenshot("status-matrix")

    page.goto(f"{live_server}/distribution-points/new-cloud?provider=s3")
    page.get_by_label("Endpoint URL").fill(slow_s3)
    page.get_by_label("Bucket", exact=True).fill("depot-test")
    page.get_by_label("Access key id").fill("AKIATEST")
    page.get_by_label("Secret access key").fill("secret")
    test_button = page.locator("button.busy-button")
    test_button.click()
    expect(test_button).to_be_disabled()
    expect(test_button).to_have_accessible_name("Testing…")
    expect(page.locator("#s3-test-result")).to_contain_text("access denied to list the bucket",
                                                            timeout=30_000)
    expect(test_button).to_be_enabled()
    expect(test_button).to_have_accessible_name("Test connection")
