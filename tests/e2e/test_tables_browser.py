"""Tables in a real browser: copy from a status matrix cell, sort the Jobs list by a column,
tick every row with the header box and cancel them in bulk."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Asset
from tests import factories
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e]


def test_matrix_copy_sort_select_all_and_bulk_cancel(app, central, live_server, page):
    """Can an admin start copies from two matrix cells, sort the Jobs list by DP, tick every job
    with select-all and cancel them all, with one flash saying what happened?"""
    factories.make_user(role="admin", email="admin@example.com")
    db.session.add(Asset(dp_id=central.id, key="Images/Win11.wim", library="Images",
                         name="Win11.wim", kind="file", size=10, digest="a" * 64,
                         status="current"))
    db.session.commit()
    seattle, boise = factories.add_dp("Seattle"), factories.add_dp("Boise")
    factories.add_copy_job(seattle, state="succeeded", key="Images/Old.wim")

    sign_in(page, live_server, "admin@example.com")
    page.goto(f"{live_server}/status/")
    for dp in (seattle, boise):
        cell = page.locator(f'tr[data-key="Images/Win11.wim"] td:has([data-dp="{dp.id}"])')
        cell.get_by_role("button", name=f"Copy Images/Win11.wim at {dp.name}").click()
    expect(page.locator("#copy-jobs div.job")).to_have_count(2)  # no worker: they stay queued

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    rows = page.locator("#job-list tbody tr.job-row")
    expect(rows).to_have_count(3)
    page.locator("#job-list thead").get_by_role("link", name="Distribution point").click()
    expect(page.locator("#job-list th[aria-sort=ascending]")).to_have_text("Distribution point")
    expect(rows.nth(0).locator("td").nth(3)).to_have_text("Boise")
    expect(rows.nth(2).locator("td").nth(3)).to_have_text("Seattle")

    page.get_by_label("Select every row on this page").check()
    boxes = page.locator('#job-list input[name="job_id"]')
    for i in range(3):
        expect(boxes.nth(i)).to_be_checked()
    boxes.nth(0).uncheck()  # the header box follows the rows
    expect(page.get_by_label("Select every row on this page")).not_to_be_checked()
    boxes.nth(0).check()
    page.get_by_role("button", name="Cancel ticked").click()
    expect(page.locator("#flash")).to_contain_text("2 jobs cancelled, 1 had already finished")
    expect(page.locator("#job-list th[aria-sort=ascending]")).to_have_text("Distribution point")
    expect(page.locator('#job-list div.job[data-state="cancelled"]')).to_have_count(2)
