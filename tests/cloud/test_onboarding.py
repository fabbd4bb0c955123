"""Add cloud that cannot strand you: providers not set up here shown greyed with the settings that
enable them (and their consent refused, naming them), Test connection busy while it runs with
only the latest answer kept, and the tab waiting for the consent stopping with why and Try again
when the consent failed or took too long."""
import pytest

from tests.helpers import csrf_from

NEW = "/distribution-points/new-cloud"
DONE = "/distribution-points/new-cloud/done"
OAUTH = ("ONEDRIVE", "GDRIVE", "DROPBOX")


@pytest.fixture
def unconfigured(app):
    """No OAuth provider set up (whatever the environment says)."""
    for prefix in OAUTH:
        app.config[f"DEPOT_{prefix}_CLIENT_ID"] = app.config[f"DEPOT_{prefix}_CLIENT_SECRET"] = None
    return app


def test_providers_not_set_up_are_greyed_with_their_settings(unconfigured, login_as):
    """Is each OAuth provider without its client shown greyed (no link) with the settings that
    enable it, S3 still offered, and one set up offered as a link again?"""
    admin = login_as("admin")
    page = admin.get(NEW).get_data(as_text=True)
    assert 'href="/distribution-points/new-cloud?provider=s3"' in page
    for key, prefix in (("onedrive", "ONEDRIVE"), ("gdrive", "GDRIVE"), ("dropbox", "DROPBOX")):
        assert f"provider={key}" not in page
        assert f'aria-disabled="true" data-provider="{key}"' in page
        assert f"DEPOT_{prefix}_CLIENT_ID and DEPOT_{prefix}_CLIENT_SECRET" in page
    unconfigured.config.update(DEPOT_DROPBOX_CLIENT_ID="id", DEPOT_DROPBOX_CLIENT_SECRET="secret")
    page = admin.get(NEW).get_data(as_text=True)
    assert 'href="/distribution-points/new-cloud?provider=dropbox"' in page
    assert "DEPOT_DROPBOX_CLIENT_ID" not in page


def test_an_unconfigured_provider_offers_no_connect_and_its_consent_is_refused(unconfigured,
                                                                               login_as):
    """Does the page of a provider not set up say which settings to set instead of offering
    Connect, is a Connect (or a Reconnect) sent anyway refused naming them, and does the tab
    waiting for it stop and say why?"""
    admin = login_as("admin")
    page = admin.get(f"{NEW}?provider=gdrive").get_data(as_text=True)
    assert "Google Drive is not set up on this server" in page
    assert "DEPOT_GDRIVE_CLIENT_ID and DEPOT_GDRIVE_CLIENT_SECRET" in page
    assert "Connect to Google Drive" not in page
    token = csrf_from(page)
    refused = admin.client.post(f"{NEW}/gdrive/connect", data={
        "name": "Home", "folder": "Depot", "csrf_token": token})
    assert refused.status_code == 400
    assert "set DEPOT_GDRIVE_CLIENT_ID and DEPOT_GDRIVE_CLIENT_SECRET" in \
        refused.get_data(as_text=True)
    waiting = admin.get(DONE, query_string={"name": "Home", "provider": "gdrive", "waited": "4"},
                        hx=True)
    text = waiting.get_data(as_text=True)
    assert waiting.status_code == 200 and waiting.headers["HX-Retarget"] == "#consent-status"
    assert "did not finish: Google Drive is not set up on this server" in text
    assert "Try again" in text and 'id="consent-wait"' in text and " hidden" in text
    again = admin.get(DONE, query_string={"name": "Home", "provider": "gdrive", "waited": "6"},
                      hx=True)
    assert again.status_code == 204  # told once: a Try again waits afresh


def test_the_waiting_tab_gives_up_after_the_setting(app, login_as):
    """Does the poll wait (204) until the page has waited DEPOT_CONSENT_WAIT_SECONDS, then stop
    with a message and Try again (no DP, no failure told)?"""
    app.config["DEPOT_CONSENT_WAIT_SECONDS"] = 60
    admin = login_as("admin")
    query = {"name": "Remote", "provider": "onedrive"}
    assert admin.get(DONE, query_string=query, hx=True).status_code == 204
    assert admin.get(DONE, query_string=dict(query, waited="59"), hx=True).status_code == 204
    assert admin.get(DONE, query_string=dict(query, waited="x"), hx=True).status_code == 204
    late = admin.get(DONE, query_string=dict(query, waited="60"), hx=True)
    text = late.get_data(as_text=True)
    assert late.status_code == 200 and late.headers["HX-Reswap"] == "innerHTML"
    assert "Depot stopped waiting after 1 min: no answer came from the OneDrive tab" in text
    assert "Try again" in text
    assert admin.get(DONE, query_string=dict(query, provider="ftp"), hx=True).status_code == 400
    assert login_as("viewer").get(DONE, query_string=query, hx=True).status_code == 403


def test_a_consent_refused_at_the_provider_stops_the_waiting_tab(login_as, onedrive_config, app,
                                                                 graph_fake):
    """When the provider's answer is a refusal, does the waiting tab say so instead of waiting?"""
    from urllib.parse import parse_qs, urlsplit

    app.config.update(onedrive_config)
    admin = login_as("admin")
    token = csrf_from(admin.get(f"{NEW}?provider=onedrive").get_data(as_text=True))
    sent = admin.client.post(f"{NEW}/onedrive/connect", data={
        "name": "Remote workers", "folder": "Depot", "csrf_token": token})
    state = parse_qs(urlsplit(sent.headers["Location"]).query)["state"][0]
    query = {"name": "Remote workers", "provider": "onedrive", "waited": "3"}
    assert admin.get(DONE, query_string=query, hx=True).status_code == 204
    admin.get(f"/distribution-points/oauth/onedrive/callback?error=access_denied&state={state}")
    told = admin.get(DONE, query_string=query, hx=True).get_data(as_text=True)
    assert "did not finish: OneDrive did not give access: access_denied" in told


def test_test_connection_buttons_are_busy_while_they_run_and_keep_the_latest_answer(login_as):
    """Are the S3 and DP node Test connection buttons disabled with "Testing…" while their
    request runs, and synced with their form so that a later request replaces an earlier one?"""
    admin = login_as("admin")
    for url in (f"{NEW}?provider=s3", "/distribution-points/new-local"):
        page = admin.get(url).get_data(as_text=True)
        button = page.split('class="secondary busy-button"')[1].split("</button>")[0]
        assert 'hx-disabled-elt="this"' in button and 'hx-sync="closest form:replace"' in button
        assert '<span class="busy-label">Testing…</span>' in button
        form = page.split('<form class="stacked-form"')[1].split(">")[0]
        assert 'hx-sync="this:replace"' in form
