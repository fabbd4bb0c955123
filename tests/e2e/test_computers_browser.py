"""Computer Management in a real browser: search the devices, tick two and move them to a group in
bulk (the table updates in place), then give that group a preferred DP and a fallback."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Device, DeviceGroup
from portal.services import device_groups
from portal.services.actors import Actor
from tests import factories
from tests.factories import add_device, add_dp
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_move_two_devices_in_bulk_and_set_the_groups_preferred_dp(app, central, live_server,
                                                                   page, screenshot):
    """Can an admin move two devices to a group in bulk and set that group's preferred DP?"""
    factories.make_user(role="admin", email="admin@example.com")
    slc = add_dp("SLC")
    group = device_groups.create_group(Actor(None), "SLC office", "Salt Lake City, 2nd floor")
    device_groups.create_group(Actor(None), "Remote workers")
    for name, ip in (("SLC-LT-0001", "10.1.0.11"), ("SLC-LT-0002", "10.1.0.12"),
                     ("SEA-LT-0003", "10.2.0.13")):
        add_device(name, ips=[ip], seen_ago=20)
    add_device("HOME-LT-0004", ips=["192.168.1.20"], seen_ago=None)

    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Computer Management").click()
    expect(page.locator("#devices tbody tr")).to_have_count(4)
    # The rows are there while the page still parses; typing before htmx has bound the form
    # (on a busy machine) would go unheard.
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined")
    page.get_by_label("Search").fill("SLC-LT")
    expect(page.locator("#devices tbody tr")).to_have_count(2)  # htmx, while typing
    expect(page).to_have_url(f"{live_server}/computers/?q=SLC-LT&group_id=&status=")
    page.get_by_label("Select SLC-LT-0001").check()
    page.get_by_label("Select SLC-LT-0002").check()
    page.get_by_label("Move the ticked devices to").select_option(label="SLC office")
    page.get_by_role("button", name="Move to group").click()
    expect(page.locator("#devices [role=status]")).to_contain_text(
        "Moved 2 devices to SLC office: SLC-LT-0001, SLC-LT-0002.")
    expect(page.locator("#devices tbody tr", has_text="SLC-LT-0001")).to_contain_text("SLC office")
    expect(page.locator("#devices tbody tr", has_text="SLC-LT-0002")).to_contain_text("SLC office")
    screenshot("computers-moved")
    page.get_by_label("Search").fill("")
    expect(page.locator("#devices tbody tr")).to_have_count(4)
    page.locator("#device-filters select[name=group_id]").select_option(label="SLC office")
    expect(page.locator("#devices tbody tr")).to_have_count(2)  # the filter applies on change
    expect(page.locator("#devices")).to_contain_text("Deploy to SLC office")

    page.get_by_role("navigation", name="Computer Management").get_by_role("link", name="Groups").click()
    row = page.locator("#groups tbody tr", has_text="SLC office")
    expect(row).to_contain_text("2")
    expect(row.get_by_role("link", name="Deploy")).to_have_attribute(
        "href", f"/deployments/new?group_id={group.id}")
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit group SLC office")).to_be_visible()
    page.get_by_label("Preferred DP").select_option(str(slc.id))
    page.get_by_label("Fallback 1").select_option(str(central.id))
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(f"{live_server}/computers/groups")
    row = page.locator("#groups tbody tr", has_text="SLC office")
    expect(row.locator("td").nth(1)).to_have_text("SLC")
    expect(row.locator("ol.fallbacks li")).to_have_text(["Central"])
    screenshot("computers-groups")

    db.session.expire_all()
    saved = db.session.get(DeviceGroup, group.id)
    assert (saved.preferred_dp_id, saved.fallback_dp_ids) == (slc.id, [central.id])
    moved = db.session.query(Device).filter_by(group_id=group.id).order_by(Device.name)
    assert [d.name for d in moved] == ["SLC-LT-0001", "SLC-LT-0002"]
