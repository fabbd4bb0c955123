"""An admin adds a branch's DP node in a real browser: test the connection in place, add it, see its
first rescan, then forget it after confirming."""
import pytest
from playwright.sync_api import expect

from tests import factories
from tests.helpers import sign_in
from tests.node_fixtures import KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_add_test_and_forget_a_dp_node(app, central, node, live_server, start_worker, page,
                                       screenshot):
    """Can an admin test a DP node's key, add it (its hand-copied file found), and forget it
    again, in the browser?"""
    factories.make_user(role="admin", email="admin@example.com")
    factories.write_file(node.root, "Images/Branch-Only.wim", b"copied in by hand")
    start_worker()
    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Distribution Points").click()
    page.get_by_role("link", name="Add local").click()
    expect(page.get_by_role("heading", name="Add a DP node")).to_be_visible()

    page.get_by_label("Name").fill("Seattle")
    page.get_by_label("URL of the DP node").fill(node.url)
    page.get_by_label("Key (the node's DEPOT_DP_KEY)").fill("not-the-key-0123456789")
    page.get_by_label("Allow plain HTTP").check()  # the test node serves plain HTTP
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-result")).to_contain_text("Seattle's DP node refused this key")
    page.get_by_label("Key (the node's DEPOT_DP_KEY)").fill(KEY)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-result")).to_contain_text("Connected: version")
    assert page.url.endswith("/distribution-points/new-local")  # tested in place, nothing saved
    page.get_by_label("Site").fill("Seattle")
    screenshot("add-local")

    page.get_by_role("button", name="Add", exact=True).click()
    expect(page).to_have_url(f"{live_server}/distribution-points/")
    row = page.locator("#dp-list tr", has_text="Seattle")
    expect(row).to_contain_text(node.url)
    expect(row.locator(".counts")).to_contain_text("1 only-here", timeout=30_000)

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Forget").click()
    expect(page.locator("#dp-list")).not_to_contain_text("Seattle")
    expect(page.locator("#dp-switcher option")).to_have_count(1)
