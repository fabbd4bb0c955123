"""Add cloud through a provider's consent page (OneDrive against the local Graph): the round trip
through the console, a wrong or foreign `state`, a refusal, Reconnect after a revoked token, and
content an older console left in the account found by the first rescan."""
import json
import os
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from portal.extensions import db
from portal.models import DistributionPoint, Job, Notification
from portal.services import distribution_points as dps
from portal.services import secrets
from tests.factories import write_file
from tests.helpers import csrf_from, fresh

NEW = "/distribution-points/new-cloud?provider=onedrive"
CONNECT = "/distribution-points/new-cloud/onedrive/connect"


@pytest.fixture
def config_overrides(onedrive_config):
    return onedrive_config


def start(console, **fields):
    """Submit the Add cloud form as the browser does: the answer sends it to the consent page."""
    token = csrf_from(console.get(NEW).get_data(as_text=True))
    data = {"name": "Remote workers", "site": "Remote", "folder": "Depot", **fields}
    return console.client.post(CONNECT, data=dict(data, csrf_token=token))


def consent(authorize_url: str) -> str:
    """The provider's consent page, allowed: where it sends the browser back (path and query)."""
    with requests.get(authorize_url, allow_redirects=False, timeout=10) as answer:
        assert answer.status_code == 302, answer.text
        back = urlsplit(answer.headers["Location"])
    return f"{back.path}?{back.query}"


def cloud_dps():
    db.session.expire_all()
    return db.session.query(DistributionPoint).filter_by(kind="cloud").all()


def test_consent_round_trip_adds_the_dp_and_starts_its_rescan(login_as, graph_fake, work):
    """Does Connect go to the provider with state and PKCE, and the answer create the DP with its
    folders, the account's name, encrypted tokens and a first rescan, then show the list?"""
    console = login_as("admin")
    page = console.get(NEW).get_data(as_text=True)
    assert 'target="_blank"' in page and "Connect to OneDrive" in page
    sent = start(console)
    assert sent.status_code == 303
    authorize = urlsplit(sent.headers["Location"])
    query = parse_qs(authorize.query)
    assert authorize.path == "/common/oauth2/v2.0/authorize"
    assert query["code_challenge_method"] == ["S256"] and query["state"][0]
    assert query["redirect_uri"] == ["http://localhost/distribution-points/oauth/onedrive/callback"]
    assert "offline_access" in query["scope"][0]

    back = console.get(consent(sent.headers["Location"]))
    [dp] = cloud_dps()
    assert back.status_code == 303 and back.headers["Location"].endswith(f"/?connected={dp.id}")
    assert (dp.name, dp.provider, dp.site, dp.status) == ("Remote workers", "onedrive", "Remote",
                                                          "online")
    assert dp.settings == {"folder": "Depot", "account": "alice@example.com", "account_id": "alice"}
    assert "access_token" not in dp.secret
    assert json.loads(secrets.decrypt(dp.secret))["refresh_token"]
    assert graph_fake.item("alice", "Depot/Images") is not None  # the library folders exist
    [job] = db.session.query(Job).filter_by(kind="rescan", dp_id=dp.id).all()
    listed = console.get(back.headers["Location"]).get_data(as_text=True)
    assert "Remote workers is connected as alice@example.com" in listed
    assert "OneDrive" in listed and "alice@example.com · Depot" in listed
    work()
    assert fresh(job.id).state == "succeeded", fresh(job.id).error


def test_a_wrong_state_is_refused_and_creates_nothing(login_as, graph_fake):
    """Is an answer whose state this session did not start a 400 that creates nothing, and is
    the right answer brought by another admin's browser refused too?"""
    console = login_as("admin")
    back = consent(start(console).headers["Location"])
    forged = back.replace("state=", "state=x")
    answer = console.get(forged)
    assert answer.status_code == 400
    assert "state does not match" in answer.get_data(as_text=True)
    other = login_as("admin")
    assert other.get(back).status_code == 400
    assert cloud_dps() == []
    # The genuine answer was consumed by neither refusal... but a state is good for one answer.
    assert console.get(back).status_code == 303
    assert console.get(back).status_code == 400
    assert len(cloud_dps()) == 1


def test_a_refused_consent_says_so_and_creates_nothing(login_as, graph_fake):
    """Does "access_denied" from the provider give a clear 400 and no DP?"""
    console = login_as("admin")
    state = parse_qs(urlsplit(start(console).headers["Location"]).query)["state"][0]
    answer = console.get(f"/distribution-points/oauth/onedrive/callback?error=access_denied"
                         f"&error_description=The+user+declined&state={state}")
    assert answer.status_code == 400
    assert "did not give access: access_denied (The user declined)" in answer.get_data(as_text=True)
    assert cloud_dps() == []


@pytest.mark.parametrize("fields, message", [
    ({"name": ""}, "name"),
    ({"folder": "../x"}, "folder must be a folder path"),
    ({"name": "Central"}, "already exists"),
])
def test_bad_input_never_reaches_the_provider(login_as, graph_fake, fields, message):
    """Is a bad name or folder a clear message on the form, before any consent starts?"""
    console = login_as("admin")
    db.session.query(DistributionPoint).filter_by(kind="central").one().name = "Central"
    db.session.commit()
    answer = start(console, **fields)
    assert answer.status_code in (400, 409) and message in answer.get_data(as_text=True)
    assert graph_fake.codes == {}


def test_unconfigured_provider_and_viewers(login_as, app):
    """Does a provider without client settings say which settings to set, and may a viewer not
    connect one?"""
    app.config["DEPOT_ONEDRIVE_CLIENT_ID"] = None
    answer = start(login_as("admin"))
    assert answer.status_code == 400
    assert "DEPOT_ONEDRIVE_CLIENT_ID" in answer.get_data(as_text=True)
    assert login_as("viewer").client.post(CONNECT, data={"name": "x"}).status_code in (400, 403)
    assert start(login_as("viewer")).status_code == 403
    assert login_as("admin").get("/distribution-points/new-cloud?provider=ftp").status_code == 400


def test_reconnect_after_a_revoked_token_keeps_the_dp(login_as, graph_fake, central, rescan,
                                                      work):
    """When the account withdraws consent, does the next job turn the DP needs-auth with a
    notification and a Reconnect button, and does Reconnect bring the same DP back online with
    its inventory, refusing another account?"""
    write_file(central.root, "Images/Win11.wim", b"w" * 5000)
    rescan(central)
    console = login_as("admin")
    console.get(consent(start(console).headers["Location"]))
    work()
    [dp] = cloud_dps()
    graph_fake.add_file("alice", "Depot/Images/Old.wim", b"o" * 100)
    graph_fake.expire_access_tokens()
    graph_fake.revoke("alice")
    job, _ = dps.request_rescan(dp, console_actor_for(console))
    work()
    assert fresh(job.id).state == "failed" and "reconnect" in fresh(job.id).error
    [dp] = cloud_dps()
    assert dp.status == "needs-auth"
    assert db.session.query(Notification).filter_by(kind="dp.needs_auth",
                                                   user_id=console.user.id).count() == 1
    listed = console.get("/distribution-points/").get_data(as_text=True)
    assert "needs-auth" in listed and f"/distribution-points/{dp.id}/reconnect" in listed

    graph_fake.next_user = "bob"
    sent = console.post(f"/distribution-points/{dp.id}/reconnect")
    wrong = console.get(consent(sent.headers["Location"]))
    assert wrong.status_code == 409
    assert "sign in as alice@example.com" in wrong.get_data(as_text=True)
    assert cloud_dps()[0].status == "needs-auth"

    graph_fake.next_user = "alice"
    sent = console.post(f"/distribution-points/{dp.id}/reconnect")
    assert console.get(consent(sent.headers["Location"])).status_code == 303
    [again] = cloud_dps()
    assert (again.id, again.status) == (dp.id, "online")
    work()
    status = {a["key"]: a["status"] for a in dps.content(again)}
    assert status == {"Images/Old.wim": "unverified", "Images/Win11.wim": "missing"}


def console_actor_for(console):
    from portal.services.actors import Actor

    return Actor(console.user, via="test")


def test_first_rescan_finds_what_an_older_console_left(login_as, graph_fake, central, rescan,
                                                       work):
    """Is a file already in the account with central's bytes `current` after the first rescan,
    with no download, by OneDrive's QuickXorHash against central's?"""
    data = os.urandom(700_000)
    write_file(central.root, "Images/Win11.wim", data)
    write_file(central.root, "Platform Packs/Dell.cab", b"d" * 1000)
    rescan(central)  # no OneDrive DP yet: central has no QuickXorHash of its files
    graph_fake.add_file("alice", "Depot/Images/Win11.wim", data)
    graph_fake.add_file("alice", "Depot/Platform Packs/Dell.cab", b"other bytes!")
    console = login_as("admin")
    console.get(consent(start(console).headers["Location"]))
    graph_fake.log.clear()
    work()
    [dp] = cloud_dps()
    status = {a["key"]: a["status"] for library in ("Images", "Platform Packs")
              for a in dps.content(dp, library)}
    assert status == {"Images/Win11.wim": "current", "Platform Packs/Dell.cab": "unverified"}
    downloads = [path for _, path, _ in graph_fake.log
                 if path.endswith("/content") and "/.depot/manifest/" not in path]
    assert downloads == []  # only Depot's small manifest records were read, no content
    # Central now keeps the QuickXorHash of the file it compared, and computes it at ingest.
    write_file(central.root, "Images/New.wim", b"n" * 10)
    rescan(central)
    from portal.models import InventoryFile

    hashes = {row.path: json.loads(row.hashes or "{}") for row in db.session.query(InventoryFile)
              .filter_by(dp_id=central.id)}
    assert set(hashes["Images/Win11.wim"]) == {"quickxor"}
    assert set(hashes["Images/New.wim"]) == {"quickxor"}


def test_abandoned_consents_do_not_grow_the_session(login_as, graph_fake):
    """Do consents started and never finished stay bounded in the signed session cookie (what
    was entered, the redirect URI and PKCE verifier of each), the newest still good?"""
    console = login_as("admin")
    for n in range(8):
        sent = start(console, name=f"Remote {n}")
    with console.client.session_transaction() as stored:
        assert len(stored["depot_consent"]) == 5
        assert not [k for k in stored if k.startswith("_state_")]  # nothing kept beside it
    assert console.get(consent(sent.headers["Location"])).status_code == 303
    assert [dp.name for dp in cloud_dps()] == ["Remote 7"]


def test_the_waiting_form_learns_when_the_dp_exists(login_as, graph_fake):
    """Does the Add cloud page's poll get nothing until the consent made the DP, then a redirect
    to the list, and may a viewer not ask?"""
    console = login_as("admin")
    done = "/distribution-points/new-cloud/done?name=Remote+workers"
    assert console.get(done, hx=True).status_code == 204
    console.get(consent(start(console).headers["Location"]))
    [dp] = cloud_dps()
    answer = console.get(done, hx=True)
    assert answer.headers["HX-Redirect"] == f"/distribution-points/?connected={dp.id}"
    assert login_as("viewer").get(done, hx=True).status_code == 403
