"""The console under its Content-Security-Policy in a real browser: no inline script or style
anywhere, so the policy refuses nothing on the main pages, and what the pages do in the browser
(htmx, the DP switcher, dismissing a flash, the device filters, the branch view's site) still
works from static/depot.js."""
import pytest
from playwright.sync_api import expect

from tests import factories
from tests.factories import add_device, add_dp
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PAGES = ["/settings/users", "/settings/tokens", "/settings/enrollment", "/settings/audit",
         "/distribution-points/new-local", "/distribution-points/new-cloud",
         "/distribution-points/new-cloud?provider=onedrive", "/status/", "/computers/groups",
         "/computers/boundaries", "/deployments/new", "/notifications/"]


def visit(page, url: str, csp_violations: list) -> None:
    """Load a page whole; fail naming it if the policy refused anything on it."""
    response = page.goto(url)
    assert response.ok, f"{url}: {response.status}"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined")
    assert not csp_violations, f"{url}: {csp_violations}"


def test_the_main_pages_run_under_the_policy(app, central, live_server, page, csp_violations):
    """Does every page of the sidebar and of Settings load with nothing refused by the CSP, and
    do htmx, the DP switcher and a flash's Dismiss still work?"""
    factories.make_user(role="admin", email="admin@example.com")
    slc = add_dp("SLC")
    add_device("SLC-LT-0001", ips=["10.1.0.11"], seen_ago=20)
    sign_in(page, live_server, "admin@example.com")
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(hrefs) >= 6
    for href in [*hrefs, *PAGES]:
        visit(page, live_server + href, csp_violations)

    # An htmx form, its error as a flash in #flash, and the flash's × (depot.js).
    visit(page, f"{live_server}/settings/tokens", csp_violations)
    page.get_by_label("Token name").fill("   ")  # passes `required`, refused by the server
    page.get_by_role("button", name="Create token").click()
    flash = page.locator("#flash .flash-error")
    expect(flash).to_contain_text("give the token a name")
    flash.get_by_role("button", name="Dismiss").click()
    expect(flash).to_have_count(0)
    page.get_by_label("Token name").fill("script")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_contain_text("dpt_")  # swapped in by htmx

    # The DP switcher submits itself on change (depot.js, no onchange=).
    page.locator("#dp-switcher").select_option(str(slc.id))
    expect(page.locator("#dp-switcher option:checked")).to_have_text("SLC (SLC)")

    # The device filters: a select's change asks for the list (htmx, no eval'd trigger filter).
    visit(page, f"{live_server}/computers/", csp_violations)
    page.locator("#device-filters select[name=status]").select_option("offline")
    expect(page).to_have_url(f"{live_server}/computers/?q=&group_id=&status=offline")
    expect(page.locator("#devices")).not_to_contain_text("SLC-LT-0001")
    assert not csp_violations


def test_the_branch_view_switches_sites_under_the_policy(app, central, live_server, page,
                                                         csp_violations):
    """Does a viewer of two sites switch between them from the select (depot.js), with nothing
    refused by the CSP?"""
    add_dp("SLC")
    add_dp("SEA")
    factories.make_user(role="viewer", email="viewer@example.com", sites=["SLC", "SEA"])
    sign_in(page, live_server, "viewer@example.com")
    visit(page, f"{live_server}/branch/?site=SLC", csp_violations)
    page.get_by_label("Site").select_option("SEA")
    expect(page).to_have_url(f"{live_server}/branch/?site=SEA")
    expect(page.get_by_role("heading", level=1)).to_have_text("SEA")
    assert not csp_violations


@pytest.fixture
def onedrive_set_up(worker_env):
    """The server started with a OneDrive client (none is reached), so Add cloud offers it."""
    worker_env.update(DEPOT_ONEDRIVE_CLIENT_ID="id", DEPOT_ONEDRIVE_CLIENT_SECRET="secret")


def test_the_consent_poll_waits_until_its_message_is_shown(app, central, onedrive_set_up,
                                                           live_server, page):
    """Does the Add cloud page's poll (every 2 s; its filter used to be eval'd JavaScript) send
    nothing while "Waiting for you to allow access" is hidden, i.e. before Connect?"""
    factories.make_user(role="admin", email="admin@example.com")
    sign_in(page, live_server, "admin@example.com")
    sent = []
    page.on("request", lambda request: "/new-cloud/done" in request.url and sent.append(request))
    page.add_init_script("""window.depotPolls = 0;
        document.addEventListener("htmx:beforeRequest", (e) => {
          if (e.detail.elt.id === "consent-wait") window.depotPolls += 1; });""")
    page.goto(f"{live_server}/distribution-points/new-cloud?provider=onedrive")
    expect(page.locator("#consent-wait")).to_be_hidden()
    page.wait_for_function("() => window.depotPolls >= 2")  # two polls came due ...
    assert sent == []  # ... and neither was sent
