"""An admin adds a OneDrive DP in a real browser: the provider's consent page opens in a new tab
(the local Graph, which asks "Allow"), and back in the console the DP is listed, its first rescan
finds the image an older console left in the account, and it is current without an upload."""
import os

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.cloud.onedrive_fixtures import graph_fake, onedrive_settings  # noqa: F401 (a fixture)
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def config_overrides(graph_fake):  # noqa: F811
    return onedrive_settings(graph_fake)


@pytest.fixture
def onedrive_env(worker_env, graph_fake):  # noqa: F811
    """The web server and the worker get the settings that point at the local Graph."""
    worker_env.update({k: str(v) for k, v in onedrive_settings(graph_fake).items()})


def test_add_a_onedrive_dp_through_its_consent_page(app, central, rescan, graph_fake,  # noqa: F811
                                                    onedrive_env, live_server, start_worker,
                                                    page, screenshot):
    """Can an admin add a OneDrive DP in the browser: consent in a new tab, the DP listed as
    connected with its files found, and the first tab following by itself?"""
    image = os.urandom(300_000)
    factories.write_file(central.root, "Images/Win11.wim", image)
    rescan(central)
    graph_fake.add_file("alice", "Depot/Images/Win11.wim", image)  # from an older console
    graph_fake.interactive = True
    factories.make_user(role="admin", email="admin@example.com")
    start_worker()
    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Distribution Points").click()
    page.get_by_role("link", name="Add cloud").click()
    expect(page.get_by_role("heading", name="Add a cloud DP")).to_be_visible()
    page.get_by_role("link", name="OneDrive").click()
    page.get_by_label("Name").fill("Remote workers")
    page.get_by_label("Site").fill("Remote")
    expect(page.get_by_label("Folder in the account")).to_have_value("Depot")
    screenshot("add-cloud")

    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Connect to OneDrive").click()
    consent = opened.value
    expect(page.locator("#consent-wait")).to_contain_text("Waiting for you to allow access")
    expect(consent.get_by_role("heading", name="Let Depot use your files?")).to_be_visible()
    consent.get_by_role("button", name="Allow").click()
    expect(consent.locator("#connected-note")).to_contain_text(
        "Remote workers is connected as alice@example.com")
    row = consent.locator("#dp-list tr", has_text="Remote workers")
    expect(row).to_contain_text("cloud (OneDrive)")
    expect(row).to_contain_text("alice@example.com · Depot")
    expect(row.locator(".counts")).to_contain_text("1 current", timeout=30_000)

    # The first tab, which waited for the consent, goes to the list by itself.
    expect(page).to_have_url(f"{live_server}/distribution-points/?connected={dp_id(consent)}")
    expect(page.locator("#dp-list tr", has_text="Remote workers")).to_contain_text("online")
    screenshot("cloud-dp-listed")


def dp_id(consent_page) -> str:
    return consent_page.url.rsplit("connected=", 1)[1]
