"""Edits in a real browser: an admin makes a technician a viewer of one site (ticking the site
from those Depot knows), then renames a cloud DP, with no consent page on the way."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import DistributionPoint, User
from tests import factories
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_edit_a_users_role_and_a_cloud_dps_name(app, central, live_server, page):
    """Can an admin change a person's role and sites from Settings, Users, Edit, and rename a
    cloud DP from its Edit page (a taken name said in the form), each list showing the change?"""
    factories.make_user(role="admin", email="admin@example.com")
    tech = factories.make_user(role="technician", email="tech@example.com")
    dp = factories.add_cloud_dp("Cloud OneDrive", "onedrive")
    dp.settings = {"folder": "Depot"}
    db.session.commit()
    factories.add_dp("SEA", site="Seattle")

    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    row = page.locator(f"#user-{tech.id}")
    expect(row).to_contain_text("technician")
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit user tech@example.com")).to_be_visible()
    page.get_by_label("Role").select_option("viewer")
    page.get_by_label("Seattle").check()
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(f"{live_server}/settings/users")
    expect(page.locator(f"#user-{tech.id}")).to_contain_text("viewer")
    expect(page.locator(f"#user-{tech.id}")).to_contain_text("Seattle")
    db.session.expire_all()
    changed = db.session.get(User, tech.id)
    assert (changed.role, changed.sites) == ("viewer", ["Seattle"])

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Distribution Points").click()
    page.locator(f"#dp-{dp.id}").get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit Cloud OneDrive")).to_be_visible()
    page.get_by_label("Name").fill("SEA")  # taken: said in the form, which keeps what was typed
    page.get_by_label("Bandwidth limit for copies").fill("12.5")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(f"#dp-edit-{dp.id} [role=alert]")).to_contain_text(
        "a distribution point named SEA already exists")
    expect(page.get_by_label("Bandwidth limit for copies")).to_have_value("12.5")
    page.get_by_label("Name").fill("Seattle OneDrive")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(f"{live_server}/distribution-points/")
    expect(page.locator(f"#dp-{dp.id}")).to_contain_text("Seattle OneDrive")
    db.session.expire_all()
    renamed = db.session.get(DistributionPoint, dp.id)
    assert (renamed.name, renamed.bandwidth_limit) == ("Seattle OneDrive", 12_500_000)
