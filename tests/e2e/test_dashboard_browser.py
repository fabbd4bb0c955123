"""An admin sees on the dashboard that a DP is offline, opens the bell's dropdown and marks
everything read, in a real browser (desktop, then phone width)."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.services import notifications
from tests import factories
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_offline_dp_on_the_dashboard_and_the_bell_dropdown(app, central, live_server, page,
                                                           screenshot):
    """Does the dashboard say a DP is offline and link to its edit page, and does the bell open
    a dropdown with the news, linked, whose Mark all read empties the count and which closes
    on Escape, and fits a phone's screen?"""
    factories.make_user(role="admin", email="admin@example.com")
    seattle = factories.add_dp("Seattle")
    seattle.status, seattle.status_reason = "offline", "Seattle does not answer"
    notifications.notify("dp.offline", "Seattle went offline: Seattle does not answer",
                         level="error", dp_id=seattle.id)
    db.session.commit()
    sign_in(page, live_server, "admin@example.com")
    page.goto(f"{live_server}/")

    expect(page.locator("#attention")).to_contain_text("1 distribution point needs attention")
    expect(page.locator("#attention-offline").get_by_role("link", name="Seattle")).to_have_attribute(
        "href", f"/distribution-points/{seattle.id}/edit")
    expect(page.locator(f"#dp-card-{seattle.id}")).to_contain_text(
        "Offline: Seattle does not answer. What it holds cannot be confirmed")
    screenshot("dashboard")

    bell = page.locator("#bell")
    expect(bell.locator(".bell-count")).to_have_text("1 unread")
    bell.locator("summary").click()
    menu = page.locator("#bell-menu")
    news = menu.get_by_role("link", name="Seattle went offline: Seattle does not answer")
    expect(news).to_have_attribute("href", f"/distribution-points/#dp-{seattle.id}")
    menu.get_by_role("button", name="Mark all read (1)").click()
    expect(bell.locator(".bell-count")).to_have_count(0)
    expect(menu.get_by_role("button", name="Mark all read (1)")).to_have_count(0)
    expect(news).to_be_visible()  # still listed, now read; the dropdown stayed open
    page.keyboard.press("Escape")
    expect(page.locator("#bell[open]")).to_have_count(0)

    page.set_viewport_size({"width": 390, "height": 844})
    bell.locator("summary").click()
    expect(news).to_be_visible()
    box = page.locator(".bell-panel").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    page.locator("main h1").click()  # a click elsewhere closes it
    expect(page.locator("#bell[open]")).to_have_count(0)
