"""The newcomer's first minutes in a real browser: sign in, open Images, drop a WIM into the central
root, click Rescan, watch the progress bar fill in place, and see the image appear without a reload."""
import os

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WIM_MIB = 48


@pytest.fixture
def config_overrides():
    # The worker reads at 16 MiB/s, so the 48 MiB image takes about three seconds: long enough for
    # the browser to see the bar part-way, short enough for the suite.
    return {"DEPOT_SCAN_RATE_LIMIT": 16 * 1024 * 1024}


def test_rescan_from_the_images_page_shows_progress_and_the_new_image(
        app, central, live_server, start_worker, page, screenshot):
    """Does Rescan on the Images page show its progress bar filling in place, then the new image
    without a reload?"""
    factories.make_user(role="admin", email="admin@example.com")
    start_worker()
    factories.write_file(central.root, "Platform Packs/Dell Latitude 7440/driver.inf", b"[Version]\n" * 400)
    block = os.urandom(1024 * 1024)
    factories.write_file(central.root, "Images/win11-23h2.wim", block * WIM_MIB)

    sign_in(page, live_server, "admin@example.com")
    expect(page.locator("#dp-switcher")).to_have_value(str(central.id))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Images").click()
    expect(page.get_by_role("heading", name="Images at Central")).to_be_visible()
    expect(page.locator("tr.asset")).to_have_count(0)
    page.evaluate("window.depotNoReload = true")  # gone if anything below reloads the page

    page.get_by_role("button", name="Rescan Central").click()
    job = page.locator("#scan-status div.job")
    expect(job).to_have_attribute("data-state", "running")
    # Sample the bar as htmx swaps it in place (bounded: at most 60 s of 0.2 s samples).
    seen = set()
    for _ in range(300):
        state = job.get_attribute("data-state")
        value = page.locator("#scan-status progress").get_attribute("value")
        if value is not None:
            seen.add(int(value))
        if state != "running" and state != "queued":
            break
        page.wait_for_timeout(200)
    expect(job).to_have_attribute("data-state", "succeeded")
    assert any(0 < v < 100 for v in seen), f"the bar was never seen part-way: {sorted(seen)}"
    expect(page.locator("#scan-status progress")).to_have_attribute("value", "100")

    row = page.locator('tr.asset[data-key="Images/win11-23h2.wim"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(f"{WIM_MIB}.0 MiB")
    expect(row.locator("code")).to_have_text(central_digest(app, "Images/win11-23h2.wim")[:12])
    expect(row.locator(".badge")).to_have_text("current")  # the central DP is the reference
    assert page.evaluate("window.depotNoReload") is True
    screenshot("images-after-rescan")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Distribution Points").click()
    expect(page.locator("#dp-list")).to_contain_text("Central")
    expect(page.locator(f"#dp-{central.id} .badge.dp-online")).to_be_visible()
    expect(page.locator(f"#dp-{central.id} .counts")).to_have_text("2 current")
    screenshot("distribution-points")


def central_digest(app, key):
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Asset

    db.session.expire_all()
    return db.session.scalars(select(Asset.digest).where(Asset.key == key)).one()
