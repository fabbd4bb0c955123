"""The audit log in a browser: sentences, a Details disclosure that opens, and the filters
swapping the list in place (htmx) with the CSV link following them."""
import pytest
from playwright.sync_api import expect

from tests import factories
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_audit_sentences_details_and_filters(app, central, live_server, page, screenshot):
    """Does the audit page read in sentences, open an entry's Details to its raw record, and
    filter by what in words, the CSV link keeping the filter?"""
    factories.make_user(role="admin", email="admin@example.com")
    factories.make_user(role="viewer", email="viewer@example.com")
    sign_in(page, live_server, "admin@example.com")
    page.goto(f"{live_server}/settings/audit")
    signed_in = page.locator("#audit tr", has_text="admin@example.com signed in").first
    expect(signed_in).to_be_visible()
    raw = signed_in.locator("details pre")
    expect(raw).to_be_hidden()
    signed_in.get_by_text("Details").click()
    expect(raw).to_be_visible()
    expect(raw).to_contain_text('"action": "auth.login"')
    screenshot("audit-log")

    page.get_by_label("What").select_option(label="User accounts")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit")).to_contain_text(
        "An operator at the command line added the user viewer@example.com as viewer")
    expect(page.locator("#audit")).not_to_contain_text("signed in")
    assert "action=user." in page.url
    expect(page.get_by_role("link", name="Export these as CSV")).to_have_attribute(
        "href", "/settings/audit.csv?actor=&action=user.&from=&to=")
