"""TLS between central and DP nodes: the node's own certificate (`--self-signed`), trust on first
use at Add local, a changed certificate refused until an admin accepts it, and no key over plain
HTTP unless the DP allows it."""
import os
import re
import stat
import subprocess
import time

import pytest
from sqlalchemy import select

from portal.core import tls
from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import AuditEvent, DistributionPoint, Job
from portal.services import dp_management
from portal.services.backends import open_storage
from portal.services.distribution_points import request_rescan
from portal.storage.dpnode import (CertificateChanged, NodeUnreachable, PlainHttpRefused,
                                   read_fingerprint)
from tests.dpnode.node_process import PYTHON_M_NODE, SERVER, start_node
from tests.factories import write_file
from tests.helpers import RebindingDns, copy_one
from tests.node_fixtures import KEY
from tests.processes import kill_hard
from tests.servers import bound_port, log_text

FINGERPRINT_LINE = re.compile(r"TLS certificate SHA-256 fingerprint: ([0-9A-F:]{95})")


def add(admin, node, **kw):
    return dp_management.add_local(admin, "Seattle", node.url, KEY, "Seattle office", **kw)


def audit_events(action):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def start_tls_node(root, log_path, command=PYTHON_M_NODE):
    """`run --self-signed` on 127.0.0.1:0 (gunicorn, or cheroot in place of waitress with
    DEPOT_TEST_DP_SERVER=waitress): the process and its https URL once its handshake works."""
    proc = start_node(root, log_path, command=command, extra=["--self-signed"])
    try:
        url = f"https://127.0.0.1:{bound_port(proc, log_path)}"
        deadline = time.monotonic() + 90
        while True:
            try:
                read_fingerprint(url)
                return proc, url
            except NodeUnreachable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the node did not serve TLS:\n{log_text(log_path)}")
                time.sleep(0.05)
    except BaseException:
        kill_hard(proc)
        raise


@pytest.mark.slow
def test_self_signed_node_prints_its_fingerprint_keeps_it_and_is_pinned(tmp_path, app, admin,
                                                                        work, central, rescan):
    """Does `run --self-signed` make a pair on first start (key 0600), print the fingerprint it
    presents, reuse the pair on the next start, and does Add local pin exactly that one, a
    rescan and a copy going through it (under gunicorn, or cheroot for waitress)?"""
    root = tmp_path / "root"
    (root / "Images").mkdir(parents=True)
    (root / "Images" / "a.wim").write_bytes(b"wim")
    proc, url = start_tls_node(root, tmp_path / "node-1.log")
    try:
        printed = FINGERPRINT_LINE.search(log_text(tmp_path / "node-1.log")).group(1)
        cert, key = root / ".depot" / "tls" / "node.crt", root / ".depot" / "tls" / "node.key"
        assert tls.display(tls.fingerprint_file(str(cert))) == printed
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        health = dp_management.test_connection(url, KEY, "Seattle")
        assert tls.display(health["tls_fingerprint"]) == printed and health["status"] == "ok"
        dp = dp_management.add_local(admin, "Seattle", url, KEY)
        work()  # its first rescan: the inventory through the pinned connection
        dp = db.session.get(DistributionPoint, dp.id)
        assert tls.display(dp.tls_fingerprint) == printed and dp.allow_plain_http is False
        assert dp.last_scan_at is not None and dp.status == "online"
        data = os.urandom(3 * 1024 * 1024 + 17)
        write_file(central.root, "Images/b.wim", data)
        rescan(central)
        job = copy_one(admin, work, "Images/b.wim", dp)
        assert job.state == "succeeded", job.error
        assert (root / "Images" / "b.wim").read_bytes() == data
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    proc, url = start_tls_node(root, tmp_path / "node-2.log", command=None)  # flask dp-node run
    try:
        assert FINGERPRINT_LINE.search(log_text(tmp_path / "node-2.log")).group(1) == printed
    finally:
        kill_hard(proc)
    shown = subprocess.run([*PYTHON_M_NODE, "fingerprint", "--root", str(root)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and printed in shown.stdout


@pytest.mark.parametrize("flags, message", [
    ({"cert": "nope.crt"}, "--cert and --key go together"),
    ({"cert": "nope.crt", "key": "nope.key"}, "does not exist"),
    ({"cert": "a.crt", "key": "a.key", "self_signed": True}, "not both"),
])
def test_node_refuses_a_certificate_it_cannot_use(tmp_path, monkeypatch, flags, message):
    """Does the node stop at once, clearly, with half a pair, missing files or both ways?"""
    from portal.dpnode import NodeMisconfigured
    from portal.dpnode.cli import serve

    monkeypatch.setenv("DEPOT_DP_KEY", KEY)
    files = {k: str(tmp_path / v) if isinstance(v, str) else v for k, v in flags.items()}
    with pytest.raises(NodeMisconfigured, match=message):
        serve(str(tmp_path), "127.0.0.1:0", server="waitress", **files)


def test_node_refuses_a_key_that_is_not_the_certificates(tmp_path, node_certificates):
    """Is a certificate with another certificate's key refused before anything is served?"""
    from portal.dpnode import NodeMisconfigured
    from portal.dpnode.tls import resolve

    with pytest.raises(NodeMisconfigured, match="do not load together"):
        resolve(str(tmp_path), node_certificates["a"][0], node_certificates["b"][1], False)


def test_add_local_pins_the_certificate_and_every_call_uses_it(app, admin, tls_node, work):
    """Does Add local over https pin the fingerprint the node presents (audited), and do health,
    rescan (inventory) and the key all go through the pinned connection?"""
    tested = dp_management.test_connection(tls_node.url, KEY, "Seattle")
    assert tested["tls_fingerprint"] == tls_node.fingerprint("a")
    dp = add(admin, tls_node, tls_fingerprint=tls.display(tested["tls_fingerprint"]))
    work()
    dp = db.session.get(DistributionPoint, dp.id)
    assert dp.tls_fingerprint == tls_node.fingerprint("a") and dp.last_scan_at is not None
    assert audit_events("dp.create")[0].details["tls_fingerprint"] == dp.tls_fingerprint
    assert dp_management.check_health() == {dp.id: "online"}
    assert {"/dp/v1/health", "/dp/v1/inventory"} <= set(tls_node.keyed)


def test_an_https_test_and_accept_read_and_send_to_the_address_checked(app, admin, tls_node,
                                                                        monkeypatch):
    """Over HTTPS, are the certificate read and the key sent to the address the name was checked
    to resolve to (a rebinding DNS server answers 169.254.169.254 after 127.0.0.1), with the
    name as TLS server name; and does accepting a new certificate do the same?"""
    dns = RebindingDns(monkeypatch)
    tested = dp_management.test_connection(dns.url(tls_node.url), KEY, "Seattle")
    assert tested["tls_fingerprint"] == tls_node.fingerprint("a") and dns.asked == 1
    assert tls_node.keyed == ["/dp/v1/health"]
    dp = dp_management.add_local(admin, "Seattle", tls_node.url, KEY)
    dp.url = dns.url(tls_node.url)
    tls_node.serve_with("b")
    dns.asked = 0
    dp_management.accept_certificate(admin, dp, tls_node.fingerprint("b"))
    assert dns.asked == 1 and dp.tls_fingerprint == tls_node.fingerprint("b")


def test_an_upper_case_https_url_is_https(app, admin, tls_node):
    """Is `HTTPS://…` taken as https (pinned at Add, not refused as plain HTTP), stored with its
    scheme in lower case?"""
    url = "HTTPS" + tls_node.url[len("https"):]
    dp = dp_management.add_local(admin, "Seattle", url, KEY, "Seattle office")
    assert dp.url == tls_node.url and dp.tls_fingerprint == tls_node.fingerprint("a")


def test_a_changed_certificate_is_refused_with_both_fingerprints(app, admin, tls_node, work):
    """When another certificate answers at the pinned URL, is the key withheld and does every
    use (health, a rescan, a new key) say why, with the pinned and the presented fingerprint?"""
    dp = add(admin, tls_node)
    work()
    tls_node.serve_with("b")
    tls_node.keyed.clear()
    pinned, presented = (tls.display(tls_node.fingerprint(w)) for w in "ab")
    with pytest.raises(CertificateChanged) as refused, open_storage(dp) as backend:
        backend.check()
    assert pinned in refused.value.message and presented in refused.value.message
    assert "accept it on the DP's Edit page" in refused.value.message
    assert dp_management.check_health() == {dp.id: "offline"}
    assert presented in db.session.get(DistributionPoint, dp.id).status_reason
    with pytest.raises(CertificateChanged):  # a new key is not sent to it either
        dp_management.update_dp(admin, dp, {"key": "another-key-0123456789"})
    job, _ = request_rescan(dp, admin)
    work()
    job = db.session.get(Job, job.id)
    assert job.state == "failed" and pinned in job.error and presented in job.error
    assert tls_node.keyed == []  # nothing with the key reached the other certificate's server


def test_add_refuses_a_certificate_other_than_the_one_tested(app, admin, tls_node):
    """Does Add refuse (saving nothing) when the node presents another certificate than the one
    Test connection showed?"""
    with pytest.raises(CertificateChanged, match=tls.display(tls_node.fingerprint("b"))):
        add(admin, tls_node, tls_fingerprint=tls_node.fingerprint("b"))
    assert db.session.scalars(select(DistributionPoint).where(
        DistributionPoint.name == "Seattle")).first() is None
    assert tls_node.keyed == []


def test_admin_accepts_the_new_certificate_on_the_edit_page(app, admin, tls_node, work,
                                                            login_as):
    """Does the Edit page show the new fingerprint with "Accept new certificate", and does
    accepting it pin it (audited as dp.accept_certificate) so the DP is online again?"""
    dp = add(admin, tls_node)
    work()
    tls_node.serve_with("b")
    old, new = tls_node.fingerprint("a"), tls_node.fingerprint("b")
    console = login_as("admin")
    page = console.get(f"/distribution-points/{dp.id}/edit").get_data(as_text=True)
    assert "Accept new certificate" in page and tls.display(new) in page
    assert tls.display(old) in page
    response = console.post(f"/distribution-points/{dp.id}/accept-certificate",
                            {"fingerprint": new}, hx=True)
    assert response.status_code == 200 and "The new certificate is pinned" in \
        response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(DistributionPoint, dp.id).tls_fingerprint == new
    event = audit_events("dp.accept_certificate")[0]
    assert event.details == {"url": tls_node.url, "old_fingerprint": old, "new_fingerprint": new}
    assert event.target == "Seattle" and event.actor == console.user.email
    assert dp_management.check_health() == {dp.id: "online"}
    assert "Accept new certificate" not in console.get(
        f"/distribution-points/{dp.id}/edit").get_data(as_text=True)


def test_accepting_another_fingerprint_than_presented_changes_nothing(app, admin, tls_node,
                                                                      work, login_as):
    """Is accepting a fingerprint the node does not present (seen before it changed again, or
    typed wrong) refused, the old pin kept and nothing audited?"""
    dp = add(admin, tls_node)
    work()
    tls_node.serve_with("b")
    response = login_as("admin").post(f"/distribution-points/{dp.id}/accept-certificate",
                                      {"fingerprint": "ab" * 32}, hx=True)
    assert response.status_code == 409 and "nothing was changed" in \
        response.get_data(as_text=True)
    bad = login_as("admin").post(f"/distribution-points/{dp.id}/accept-certificate",
                                 {"fingerprint": "not-one"}, hx=True)
    assert bad.status_code == 400 and "64 hex digits" in bad.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(DistributionPoint, dp.id).tls_fingerprint == tls_node.fingerprint("a")
    assert audit_events("dp.accept_certificate") == []


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_only_admins_accept_a_certificate(app, admin, tls_node, work, login_as, api_as, role):
    """Are the console's and the API's accept a 403 for technicians and viewers, pinning
    nothing?"""
    dp = add(admin, tls_node)
    work()
    tls_node.serve_with("b")
    new = tls_node.fingerprint("b")
    console = login_as(role)
    assert console.get(f"/distribution-points/{dp.id}/edit").status_code == 403
    assert console.post(f"/distribution-points/{dp.id}/accept-certificate",
                        {"fingerprint": new}).status_code == 403
    api = api_as(role)
    assert api.post(f"/api/v1/distribution-points/{dp.id}/accept-certificate",
                    json={"fingerprint": new}).status_code == 403
    db.session.expire_all()
    assert db.session.get(DistributionPoint, dp.id).tls_fingerprint == tls_node.fingerprint("a")
    assert audit_events("dp.accept_certificate") == []


def test_api_accepts_a_certificate_and_shows_the_pin(app, admin, tls_node, work, api_as):
    """Does the API show tls_fingerprint and allow_plain_http, and accept a new certificate?"""
    api = api_as("admin")
    created = api.post("/api/v1/distribution-points", json={
        "name": "Seattle", "kind": "local", "url": tls_node.url, "key": KEY})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["tls_fingerprint"] == tls_node.fingerprint("a")
    assert body["allow_plain_http"] is False
    tls_node.serve_with("b")
    accepted = api.post(f"/api/v1/distribution-points/{body['id']}/accept-certificate",
                        json={"fingerprint": tls.display(tls_node.fingerprint("b"))})
    assert accepted.status_code == 200 and \
        accepted.get_json()["tls_fingerprint"] == tls_node.fingerprint("b")


def test_plain_http_is_refused_unless_allowed(app, admin, node, api_as, login_as):
    """Is the key never sent to an http:// node (test, add, use) unless the DP allows plain
    HTTP, with a message that says what to do; and does the list badge such a DP?"""
    received = []
    inner = node.app.wsgi_app
    node.app.wsgi_app = lambda environ, start: received.append(environ["PATH_INFO"]) or inner(
        environ, start)
    for attempt in (lambda: dp_management.test_connection(node.url, KEY, "Seattle"),
                    lambda: add(admin, node)):
        with pytest.raises(PlainHttpRefused, match="Allow plain HTTP"):
            attempt()
    api = api_as("admin")
    refused = api.post("/api/v1/distribution-points", json={
        "name": "Seattle", "kind": "local", "url": node.url, "key": KEY})
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "plain_http_refused"
    assert received == []  # nothing reached the node: the key stayed at central
    allowed = api.post("/api/v1/distribution-points", json={
        "name": "Seattle", "kind": "local", "url": node.url, "key": KEY,
        "allow_plain_http": True})
    assert allowed.status_code == 201 and allowed.get_json()["allow_plain_http"] is True
    assert allowed.get_json()["tls_fingerprint"] is None
    html = login_as("admin").get("/distribution-points/").get_data(as_text=True)
    assert 'class="badge dp-plain-http"' in html and "plain HTTP" in html
    dp = db.session.get(DistributionPoint, allowed.get_json()["id"])
    with pytest.raises(PlainHttpRefused):  # unticking it while the URL is http://
        dp_management.update_dp(admin, dp, {"allow_plain_http": False})
    dp.allow_plain_http = False  # as if changed behind the service's back: refused at use
    db.session.commit()
    received.clear()
    with pytest.raises(PlainHttpRefused), open_storage(dp) as backend:
        backend.check()
    assert received == []


def test_fingerprints_are_normalised():
    """Are "AB:CD..." forms, spaces and a sha256 prefix one fingerprint, and others refused?"""
    plain = "0123456789abcdef" * 4
    shown = tls.display(plain)
    assert shown.count(":") == 31 and shown == shown.upper()
    for form in (shown, shown.lower(), f"SHA256:{plain}", plain.upper(), shown.replace(":", " ")):
        assert tls.normalise(form) == plain
    for bad in ("", "ab:cd", plain + "00", "zz" * 32, None):
        with pytest.raises(DepotError):
            tls.normalise(bad)


def test_console_test_connection_shows_the_fingerprint_and_add_pins_it(app, tls_node, login_as):
    """Does the console's Test connection show the node's fingerprint (and carry it in the form),
    and does Add with it pin that certificate; does an unticked plain-HTTP URL get the reason?"""
    console = login_as("admin")
    fields = {"name": "Seattle", "url": tls_node.url, "key": KEY, "site": ""}
    tested = console.post("/distribution-points/new-local/test", fields, hx=True)
    body = tested.get_data(as_text=True)
    pin = tls_node.fingerprint("a")
    assert "Connected: version" in body and tls.display(pin) in body
    assert f'name="tls_fingerprint" value="{pin}"' in body
    added = console.post("/distribution-points/new-local", dict(fields, tls_fingerprint=pin),
                         hx=True)
    assert added.headers.get("HX-Redirect") == "/distribution-points/"
    dp = db.session.scalars(select(DistributionPoint).where(
        DistributionPoint.name == "Seattle")).one()
    assert dp.tls_fingerprint == pin and dp.allow_plain_http is False
    plain = console.post("/distribution-points/new-local/test",
                         dict(fields, url=tls_node.url.replace("https://", "http://")), hx=True)
    assert "Allow plain HTTP" in plain.get_data(as_text=True)
    assert "Connected" not in plain.get_data(as_text=True)
