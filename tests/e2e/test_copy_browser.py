"""Copy to… in a real browser: tick images, pick Seattle, watch each copy's bar reach 100%, and see
the status turn `current` at Seattle and in the status matrix, without a reload."""
import os
import re

import pytest
from playwright.sync_api import expect

from portal.services import distribution_points as dps
from portal.services import dp_management
from portal.services.actors import Actor
from tests import factories
from tests.helpers import run_worker, sign_in
from tests.node_fixtures import KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MB = 1024 * 1024


@pytest.fixture
def config_overrides():
    return {"DEPOT_COPY_CHUNK": 256 * 1024}


def test_copy_to_a_dp_node_with_progress(app, central, node, live_server, start_worker, page,
                                         screenshot):
    """Can an admin tick two images, copy them to a DP node, watch the progress bars fill with
    what crossed the network, see them current at the DP and in the status matrix, and what
    copying the third would send?"""
    admin = factories.make_user(role="admin", email="admin@example.com")
    actor = Actor(admin, via="console")
    for name in ("Win11-23H2", "Win10-22H2", "Server2025"):
        factories.write_file(central.root, f"Images/{name}.wim", os.urandom(3 * MB))
    dps.request_rescan(central, actor)
    seattle = dp_management.add_local(actor, "Seattle", node.url, KEY, "Seattle office",
                                      allow_plain_http=True)
    run_worker()
    # 2 MiB/s, so the bars are seen moving.
    dp_management.update_dp(actor, seattle, {"bandwidth_limit": 2 * MB})
    start_worker()

    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Images").click()
    page.evaluate("window.depotNoReload = true")
    for name in ("Win11-23H2", "Win10-22H2"):
        page.get_by_label(f"Select {name}.wim").check()
    page.get_by_label("Copy to").select_option(label="Seattle (Seattle office)")
    page.get_by_role("button", name="Copy to…").click()

    bars = page.locator("#copy-jobs div.job")
    expect(bars).to_have_count(2)
    expect(page.locator("#copy-jobs div.job[data-state=running]").first).to_be_visible(timeout=30_000)
    # Beside the bar, what crossed the network (a first copy: nothing to reuse yet).
    network = page.locator("#copy-jobs div.job[data-state=running] .copy-network").first
    expect(network).to_contain_text(re.compile(r"^3\.0 MiB: .* sent, .* reused$"))
    screenshot("copy-in-progress")
    for i in range(2):
        expect(bars.nth(i)).to_have_attribute("data-state", "succeeded", timeout=60_000)
        expect(bars.nth(i).locator("progress")).to_have_attribute("value", "100")
        expect(bars.nth(i)).to_contain_text("3.0 MiB: 3.0 MiB sent, 0 B reused")
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
