"""Errors in Depot's own words: what Depot tried and what happened, never an exception's name in
the sentence; the technical account behind a Details disclosure."""
import socket
import ssl

import requests

from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import dp_management, secrets
from portal.storage.answers import failure_detail, host_port, unreachable_words

WHERE = "seattle.example:8443"


def _raised(exc: BaseException, outer=requests.ConnectionError) -> BaseException:
    """`exc` wrapped as requests wraps what the socket raised."""
    try:
        try:
            raise exc
        except BaseException as inner:
            raise outer("HTTPSConnectionPool(host='seattle.example'): secret words") from inner
    except BaseException as wrapped:
        return wrapped


def test_each_kind_of_connection_failure_reads_as_what_depot_tried():
    """Does each kind of failure say what Depot tried, with no exception name or server words?"""
    said = {
        "refused": unreachable_words(_raised(ConnectionRefusedError(111, "Connection refused")),
                                     WHERE, 10),
        "timeout": unreachable_words(requests.ReadTimeout("read timed out"), WHERE, 10),
        "name": unreachable_words(_raised(socket.gaierror(-2, "Name or service not known")),
                                  WHERE, 10),
        "tls": unreachable_words(_raised(ssl.SSLError(1, "bad record")), WHERE, 10),
        "reset": unreachable_words(_raised(ConnectionResetError(104, "reset")), WHERE, 10),
        "other": unreachable_words(_raised(OSError("???")), WHERE, 10),
    }
    assert said == {
        "refused": "Depot could not connect to seattle.example:8443 (connection refused)",
        "timeout": "seattle.example:8443 did not answer within 10 s",
        "name": "Depot could not find seattle.example: the name does not resolve to an address",
        "tls": "Depot could not make a secure connection to seattle.example:8443: the TLS "
               "handshake failed (is it an https:// address, on the right port?)",
        "reset": "seattle.example:8443 closed the connection before it answered",
        "other": "Depot could not connect to seattle.example:8443",
    }
    assert not any("Error" in s or "secret" in s for s in said.values())
    detail = failure_detail(_raised(ConnectionRefusedError(111, "Connection refused")), "GET /x")
    assert detail == "GET /x: ConnectionError ← ConnectionRefusedError (errno 111)"
    assert host_port("https://seattle.example/x") == "seattle.example:443"
    assert host_port("http://u:p@[::1]:8080/") == "[::1]:8080"


def test_a_key_the_node_refuses_at_work_says_what_to_do_once(seattle, login_as, node):
    """When a DP node stops taking Depot's key, does its row say so once, in words, with what to
    do ("Seattle: Seattle refused the key" before), and the bell say the same?"""
    console = login_as("admin")
    seattle.secret = secrets.encrypt("another-key-0123456789")
    db.session.commit()
    assert dp_management.check_health() == {seattle.id: "offline"}
    dp = db.session.get(DistributionPoint, seattle.id)
    db.session.refresh(dp)
    assert dp.status_reason == ("Seattle's DP node refused Depot's key: re-enter the key on its "
                                "edit page")
    html = console.get("/distribution-points/").get_data(as_text=True)
    assert ("Seattle&#39;s DP node refused Depot&#39;s key: re-enter the key on its edit "
            "page") in html
    assert "Seattle: Seattle" not in html


def test_an_unreachable_node_at_the_edit_page_shows_the_detail_behind_a_disclosure(hx_client,
                                                                                 seattle):
    """Does a new URL where nothing listens give the sentence, with what was asked and the
    exception classes inside a <details>?"""
    fields = {"name": "Seattle", "site": "Seattle", "url": "http://127.0.0.1:1", "key":
              "another-key-0123456789", "allow_plain_http": "y", "bandwidth_limit": "",
              "allowed_hours": ""}
    body = hx_client.post(f"/distribution-points/{seattle.id}/edit", fields).get_data(as_text=True)
    assert "Depot could not connect to 127.0.0.1:1 (connection refused)" in body
    assert '<details class="error-detail"><summary>Details</summary><pre>' in body
    assert "GET http://127.0.0.1:1/dp/v1/health: ConnectionError" in body
    assert "another-key" not in body


def test_the_error_page_and_flash_disclose_a_detail(app, login_as, monkeypatch):
    """Does any DepotError with a detail show it behind Details, on the error page and in the
    htmx flash, and neither when there is none?"""
    from portal.core.errors import DepotError
    from portal.services import distribution_points as dps

    def refuse(*args, **kw):
        raise DepotError("Depot could not do it", status=502, detail="GET https://x:1/: Oops")

    monkeypatch.setattr(dps, "request_rescan", refuse)
    console = login_as("admin")
    central = dps.central_dp()
    page = console.post(f"/distribution-points/{central.id}/rescan")
    html = page.get_data(as_text=True)
    assert page.status_code == 502 and "Depot could not do it" in html
    assert ('<details class="error-detail"><summary>Details</summary>'
            '<pre>GET https://x:1/: Oops') in html
    flash = console.post(f"/distribution-points/{central.id}/rescan", hx=True)
    assert flash.headers["HX-Retarget"] == "#flash"
    assert "<summary>Details</summary><pre>GET https://x:1/: Oops" in flash.get_data(as_text=True)
