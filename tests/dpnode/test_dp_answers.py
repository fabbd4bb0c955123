"""What a DP node answers is read typed and bounded (issue 13, item 4), and the connection test
reports in Depot's own words only, refusing credentials in URLs and link-local or metadata
addresses (item 11). A "node" here is a small web server answering whatever the test tells it."""
import hashlib
import json
import socket
import threading

import pytest
from sqlalchemy import text
from werkzeug.wrappers import Request, Response

from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import DistributionPoint, InventoryFile, Job
from portal.services import dp_management
from portal.services.backends import open_storage, probe_storage
from portal.storage import answers
from portal.storage.answers import UnreadableAnswer, host_port
from portal.storage.base import Source, UploadState
from portal.storage.dpnode import AddressRefused, NodeUnreachable, check_address, failure_words
from tests.helpers import RebindingDns
from tests.node_fixtures import KEY
from tests.servers import LoopbackServer

HEALTH = {"status": "ok", "version": "0.1.0", "free_bytes": 10 << 30, "total_bytes": 20 << 30,
          "reserve_bytes": 0, "features": ["delta"]}


class FakeNode:
    """A web server on a loopback port answering `answers[path]` = (status, body bytes); it
    records the requests it got (`seen`), and a path in `hold` waits for `release` first."""

    def __init__(self):
        self.answers, self.seen, self.hold, self.hosts = {}, [], set(), []
        self.release = threading.Event()
        self.server = LoopbackServer(Request.application(self._answer), "fake-node")
        self.url = self.server.start()

    def _answer(self, request):
        self.seen.append(request.path)
        self.hosts.append(request.host)
        if request.path in self.hold:
            self.release.wait(timeout=30)
        status, body = self.answers.get(request.path, (404, b"<html>no</html>"))
        return Response(body, status=status, mimetype="application/json")

    def say(self, path: str, body, status: int = 200) -> None:
        self.answers[f"/dp/v1{path}"] = (status, body if isinstance(body, bytes)
                                         else json.dumps(body).encode())

    def stop(self) -> None:
        self.release.set()
        self.server.stop()


@pytest.fixture
def fake(app):
    node = FakeNode()
    node.say("/health", HEALTH)
    yield node
    node.stop()


def _test(url, name="Branch"):
    return dp_management.test_connection(url, KEY, name, allow_plain_http=True)


# --- health --------------------------------------------------------------------------------------

def test_a_healthy_answer_is_read(fake):
    """Is a node's health taken with its version and space as whole numbers?"""
    health = _test(fake.url)
    assert health["version"] == "0.1.0" and health["free_bytes"] == 10 << 30
    assert health["tls_fingerprint"] is None


@pytest.mark.parametrize("field, value, words", [
    ("free_bytes", "leak", "free_bytes is not a whole number"),
    ("free_bytes", True, "free_bytes is not a whole number"),
    ("free_bytes", 1.5, "free_bytes is not a whole number"),
    ("free_bytes", -1, "free_bytes is out of range"),
    ("total_bytes", 2**64, "total_bytes is out of range"),
    ("total_bytes", {"a": [1, {"b": 2}]}, "total_bytes is not a whole number"),
    ("reserve_bytes", "12", "reserve_bytes is not a whole number"),
    ("version", "v" * 5000, "version is longer than 64 characters"),
    ("version", ["0.1"], "version is not a text"),
    ("version", "0.1\u202e", "version holds control characters"),
    ("status", "broken", "its status is not ok"),
    ("features", "delta", "features is not a short list"),
])
def test_a_health_report_depot_cannot_read_is_refused(fake, field, value, words):
    """Is a health report with a wrong type, a number out of range or a long text refused with
    Depot's reason (naming the field, never the value), and nothing added?"""
    fake.say("/health", dict(HEALTH, **{field: value}))
    with pytest.raises(UnreadableAnswer) as caught:
        _test(fake.url)
    message = caught.value.message
    assert message == f"Branch answered a health report Depot cannot read ({words})"
    assert "leak" not in message and "vvvv" not in message
    with pytest.raises(UnreadableAnswer):
        dp_management.add_local(_admin(), "Branch", fake.url, KEY, allow_plain_http=True)
    assert db.session.query(DistributionPoint).filter_by(name="Branch").count() == 0


def _admin():
    from portal.services.actors import Actor
    from tests import factories

    return Actor(factories.make_user("admin"), via="console")


NOT_A_NODE = r"did not answer like a DP node: it is not a Depot DP node"


@pytest.mark.parametrize("body, words", [
    (b'{"status": "ok", "version": "' + b"x" * (2 * 1024 * 1024) + b'"}',  # 2 MiB
     r"^Branch's answer is larger than Depot reads \(1024 KiB\)$"),
    (b"[" * 100_000 + b"]" * 100_000, NOT_A_NODE),  # past Python's recursion limit
    (b'{"a":' * 40 + b"1" + b"}" * 40, NOT_A_NODE),  # deeper than Depot reads
    (b"[1, 2]", NOT_A_NODE),
    (b"not json", NOT_A_NODE),
])
def test_a_body_too_large_too_deep_or_not_an_object_is_refused(fake, body, words):
    """Is a huge, deeply nested or non-object answer refused with a reason, not a crash?"""
    fake.say("/health", body)
    with pytest.raises(DepotError, match=words):
        _test(fake.url)


def test_a_saved_node_that_starts_answering_junk_goes_offline_with_the_reason(fake, admin):
    """Does the periodic health check turn a node answering `{"free_bytes": "leak"}` offline with
    Depot's reason, keeping the last space it read (whole numbers) in the row?"""
    dp = dp_management.add_local(admin, "Branch", fake.url, KEY, allow_plain_http=True)
    fake.say("/health", dict(HEALTH, free_bytes="leak"))
    assert dp_management.check_health() == {dp.id: "offline"}
    db.session.expire_all()
    dp = db.session.get(DistributionPoint, dp.id)
    assert dp.status_reason == ("Branch answered a health report Depot cannot read "
                                "(free_bytes is not a whole number)")
    raw = db.session.execute(text("SELECT free_bytes, total_bytes FROM distribution_points "
                                  "WHERE id = :id"), {"id": dp.id}).one()
    assert raw == (10 << 30, 20 << 30)


def test_health_check_never_stores_a_wrong_type(app, monkeypatch, fake, admin):
    """Even if a backend handed on a wrong space, is it refused before it reaches the row?"""
    dp = dp_management.add_local(admin, "Branch", fake.url, KEY, allow_plain_http=True)
    monkeypatch.setattr(dp_management, "_check_one",
                        lambda app, dp, timeout: ("online", None, ("leak", 2**70)))
    dp_management.check_health()
    db.session.expire_all()
    dp = db.session.get(DistributionPoint, dp.id)
    assert (dp.free_bytes, dp.total_bytes, dp.status) == (10 << 30, 20 << 30, "offline")
    assert "free_bytes is not a whole number" in dp.status_reason


# --- the inventory -------------------------------------------------------------------------------

def _inventory(*records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


FILE = {"type": "file", "path": "Images/a.wim", "size": 5, "mtime_ns": 1, "sha256": "a" * 64,
        "error": None}
END = {"type": "end", "files": 1, "files_hashed": 1, "free_bytes": 1, "total_bytes": 2}


@pytest.mark.parametrize("record, words", [
    (dict(FILE, size="5"), "a file's size is not a whole number"),
    (dict(FILE, size=2**64), "a file's size is out of range"),
    (dict(FILE, mtime_ns=1.5), "a file's time is not a whole number"),
    (dict(FILE, sha256="leak"), "sha256 is not a SHA-256"),
    (dict(FILE, path="x" * 5000), "a file's path is longer than 4096 characters"),
    (dict(FILE, path="Images/a\ud800.wim"), "a file's path holds control characters"),
    (dict(FILE, path=["Images", "a"]), "a file's path is not a text"),
    ({k: v for k, v in FILE.items() if k != "size"}, "size is missing"),
])
def test_an_inventory_record_depot_cannot_read_fails_the_rescan(fake, admin, work, record,
                                                                 words):
    """Does a file record with a wrong type fail the rescan with Depot's reason, the DP offline
    and nothing written to its inventory?"""
    dp = dp_management.add_local(admin, "Branch", fake.url, KEY, allow_plain_http=True)
    fake.say("/inventory", _inventory(FILE, record, END))
    work()
    db.session.expire_all()
    job = db.session.query(Job).filter_by(dp_id=dp.id, kind="rescan").one()
    assert job.state == "failed"
    assert f"Branch's inventory Depot cannot read ({words})" in job.error \
        or f"Branch's inventory has a record Depot cannot read ({words})" in job.error
    dp = db.session.get(DistributionPoint, dp.id)
    assert dp.status == "offline" and "Depot cannot read" in dp.status_reason
    assert db.session.query(InventoryFile).filter_by(dp_id=dp.id).count() == 0


def test_an_inventory_with_a_huge_line_or_a_junk_end_fails(fake, admin):
    """Is a line of 10 MB refused without being kept whole, and a junk free space at the end
    refused too?"""
    backend = probe_storage("local", None, url=fake.url, secret=KEY, name="Branch",
                            allow_plain_http=True)
    fake.say("/inventory", _inventory(FILE) + b'{"type": "problem", "message": "'
             + b"m" * (10 * 1024 * 1024) + b'"}\n' + _inventory(END))
    with backend, pytest.raises(UnreadableAnswer, match="has a line longer than Depot reads"):
        list(backend.walk([]))
    fake.say("/inventory", _inventory(FILE, dict(END, free_bytes="leak")))
    with backend, pytest.raises(UnreadableAnswer, match=r"ended with a free space Depot cannot "
                                                         r"read \(free_bytes is not a whole"):
        list(backend.walk([]))
    fake.say("/inventory", _inventory(FILE, {"type": "problem", "message": "bad\x1b[31m" * 100},
                                      END))
    problems = []
    with backend:
        assert [e.path for e in backend.walk(problems)] == ["Images/a.wim"]
    assert len(problems[0]) <= 500 and "\x1b" not in problems[0]


# --- uploads -------------------------------------------------------------------------------------

def _source(size=10, index=None):
    data = b"x" * size
    return Source("Images/a.wim", size, hashlib.sha256(data).hexdigest(), {},
                  lambda offset, length: data[offset:offset + length], index=index)


@pytest.mark.parametrize("answer, words", [
    ({"id": "../../content?path=Images", "offset": 0}, "id is not an upload's name"),
    ({"id": "u1", "offset": "0"}, "offset is not a whole number"),
    ({"id": "u1", "offset": 11}, "offset is out of range"),
    ({"id": "u1", "offset": 10, "complete": True, "size": 10, "mtime_ns": "now",
      "sha256": "a" * 64}, "mtime_ns is not a whole number"),
])
def test_an_upload_answer_depot_cannot_read_is_refused(fake, answer, words):
    """Is an upload id that is no name, or an offset or a finished answer of the wrong type,
    refused before it goes into a URL or the inventory?"""
    fake.say("/uploads", answer)
    with probe_storage("local", None, url=fake.url, secret=KEY, name="Branch",
                       allow_plain_http=True) as backend:
        backend._features = set()  # whole files
        with pytest.raises(UnreadableAnswer, match=rf"Branch answered an? [a-z ]+ Depot cannot "
                                                   rf"read \({words}\)"):
            backend.upload(_source(), UploadState())
    assert not any("content" in path for path in fake.seen)


def test_a_finish_answer_depot_cannot_read_is_refused(fake):
    """Is a finished upload's answer (what goes into the inventory) read typed?"""
    fake.say("/uploads/u1/finish", {"size": "10", "mtime_ns": 1, "sha256": "a" * 64})
    with probe_storage("local", None, url=fake.url, secret=KEY, name="Branch",
                       allow_plain_http=True) as backend:
        with pytest.raises(UnreadableAnswer, match=r"size is not a whole number"):
            backend.finish_upload("u1", 10)
        fake.say("/uploads/u1/finish", {"size": 10, "mtime_ns": 1, "sha256": "a" * 64,
                                        "hashes": {"md5": ["x"]}})
        with pytest.raises(UnreadableAnswer, match=r"a hash is not a text"):
            backend.finish_upload("u1", 10)


@pytest.mark.parametrize("plan, words", [
    ({"done": 0, "need": [[0, 99]], "reused_bytes": 0}, "a range's end is out of range"),
    ({"done": -1, "need": [], "reused_bytes": 0}, "done is out of range"),
    ({"done": 0, "need": [[2, 1]], "reused_bytes": 0}, "a range's end is out of range"),
    ({"done": 0, "need": "all", "reused_bytes": 0}, "need is not a list of chunk ranges"),
    ({"done": 0, "need": [[0, 1]], "reused_bytes": 2**40}, "reused_bytes is out of range"),
    ({"done": 0, "need": [[0, 1]]}, "reused_bytes is missing"),
])
def test_a_delta_plan_depot_cannot_read_is_refused(fake, plan, words):
    """Is a delta plan whose chunk numbers leave the file, or of the wrong type, refused?"""
    from portal.core.chunks import ChunkIndex

    data = b"0123456789"
    index = ChunkIndex((4, 3, 3), (b"\0" * 32,) * 3)  # three chunks
    fake.say("/uploads", {"id": "u1", "offset": 0})
    fake.say("/uploads/u1/index", plan)
    source = Source("Images/a.wim", len(data), hashlib.sha256(data).hexdigest(), {},
                    lambda offset, length: data[offset:offset + length], index=index)
    with probe_storage("local", None, url=fake.url, secret=KEY, name="Branch",
                       allow_plain_http=True) as backend:
        backend._features = {"delta"}
        with pytest.raises(UnreadableAnswer, match=rf"Branch answered a delta plan Depot cannot "
                                                   rf"read \({words}\)"):
            backend.upload(source, UploadState())


def test_a_node_error_message_is_cleaned_and_cut(fake):
    """Is a node's own reason for refusing (shown on a copy's job) cut short and cleaned?"""
    fake.say("/uploads", {"error": {"code": "conflict", "message": "\x1b[2J" + "y" * 5000}}, 409)
    with probe_storage("local", None, url=fake.url, secret=KEY, name="Branch",
                       allow_plain_http=True) as backend:
        backend._features = set()
        with pytest.raises(DepotError) as caught:
            backend.upload(_source(), UploadState())
    assert len(caught.value.message) < 400 and "\x1b" not in caught.value.message


# --- the connection test in Depot's own words ----------------------------------------------------

def test_errors_are_in_depots_words(fake, refused_url):
    """Does the test say what happened (refused, HTTP 401, HTTP 500, not a node) without the
    node's own words or an exception's class name?"""
    fake.say("/health", {"error": {"code": "x", "message": "SECRET-INTERNAL db at 10.0.0.5"}},
             500)
    with pytest.raises(DepotError) as caught:
        _test(fake.url)
    assert caught.value.message == (f"Branch ({fake.url}) answered HTTP 500: the node is not "
                                    "well (its log says why)")
    fake.say("/health", {"error": {"code": "unauthorized", "message": "SECRET-KEY-HINT"}}, 401)
    with pytest.raises(DepotError) as caught:
        _test(fake.url)
    assert caught.value.message.startswith("Branch's DP node refused this key: enter the key the "
                                           "node was started with")
    assert "SECRET" not in caught.value.detail
    fake.say("/health", {"error": {"code": "teapot", "message": "SECRET teapot"}}, 418)
    with pytest.raises(DepotError) as caught:
        _test(fake.url)
    assert caught.value.message == f"Branch ({fake.url}) answered HTTP 418: is it a Depot DP node?"
    del fake.answers["/dp/v1/health"]  # a web server's 404 page
    with pytest.raises(DepotError) as caught:
        _test(fake.url)
    assert "answered HTTP 404: it is not a Depot DP node" in caught.value.message
    with pytest.raises(NodeUnreachable) as caught:
        _test(refused_url)
    assert caught.value.message == (f"Depot could not connect to {host_port(refused_url)} "
                                    "(connection refused)")


def test_a_node_that_does_not_answer_in_time(app, fake):
    """Does a node that takes longer than DEPOT_HEALTH_TIMEOUT get "did not answer within"?"""
    app.config["DEPOT_HEALTH_TIMEOUT"] = 1
    fake.hold.add("/dp/v1/health")
    with pytest.raises(NodeUnreachable) as caught:
        _test(fake.url)
    fake.release.set()
    assert caught.value.message == f"{host_port(fake.url)} did not answer within 1 s"


def test_the_api_test_echoes_nothing_of_the_node(api_as, fake):
    """Does POST /api/v1/distribution-points/test answer in Depot's words only?"""
    fake.say("/health", {"error": {"code": "x", "message": "SECRET-INTERNAL"}}, 503)
    api = api_as("admin")
    response = api.post("/api/v1/distribution-points/test",
                        {"url": fake.url, "key": KEY, "allow_plain_http": True})
    body = response.get_data(as_text=True)
    assert response.status_code == 502 and "SECRET" not in body and "Error'" not in body
    assert "answered HTTP 503" in body


@pytest.mark.parametrize("url", ["http://admin:hunter2@127.0.0.1:1", "http://admin@127.0.0.1:1",
                                 "https://:pw@dp.example.com"])
def test_credentials_in_the_url_are_refused(fake, url):
    """Is a URL with user:pass@ refused before anything connects, without repeating it?"""
    with pytest.raises(DepotError) as caught:
        dp_management.test_connection(url, KEY, "Branch", allow_plain_http=True)
    assert "must not carry a user name or password" in caught.value.message
    assert "hunter2" not in caught.value.message


@pytest.mark.parametrize("url, shown", [
    ("http://169.254.169.254/latest", "169.254.169.254"),
    ("http://169.254.10.1:8080", "169.254.10.1"),
    ("http://[fe80::1]:8080", "fe80::1"),
    ("http://[fd00:ec2::254]", "fd00:ec2::254"),
    ("http://[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
    ("http://metadata.google.internal/computeMetadata/v1", "metadata.google.internal"),
])
def test_link_local_and_metadata_addresses_are_refused(app, url, shown):
    """Are link-local and metadata addresses refused before any connection, by address?"""
    with pytest.raises(AddressRefused) as caught:
        dp_management.test_connection(url, KEY, "Branch", allow_plain_http=True)
    assert shown in caught.value.message and "DEPOT_ALLOW_LINK_LOCAL_DPS=1" in caught.value.message
    assert caught.value.status == 400


def test_a_name_resolving_to_a_metadata_address_is_refused(app, monkeypatch):
    """Is the check made on what the name resolves to, not on the name?"""
    real = socket.getaddrinfo

    def resolve(host, *args, **kw):
        if host == "dp.branch.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 8080))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(AddressRefused, match="leads to 169.254.169.254"):
        dp_management.test_connection("http://dp.branch.test:8080", KEY, "Branch",
                                      allow_plain_http=True)


def test_the_connection_test_connects_to_the_address_it_checked(app, fake, monkeypatch):
    """With a DNS server that answers 127.0.0.1 and then 169.254.169.254, is the name resolved
    once, the node reached at the address checked, and the Host header still the name?"""
    dns = RebindingDns(monkeypatch)
    url = dns.url(fake.url)
    assert _test(url)["version"] == "0.1.0"
    assert dns.asked == 1 and fake.hosts == [url.split("//")[1]]


def test_a_saved_node_s_backend_resolves_its_name_once(app, fake, admin, monkeypatch):
    """Does a saved DP's backend keep connecting to the address it checked, call after call,
    while a new backend checks the name again (and refuses what it now leads to)?"""
    dp = dp_management.add_local(admin, "Branch", fake.url, KEY, allow_plain_http=True)
    dns = RebindingDns(monkeypatch)
    dp.url = dns.url(fake.url)
    db.session.commit()
    with open_storage(dp) as backend:
        assert backend.check()["version"] == "0.1.0" and backend.check()["status"] == "ok"
    assert dns.asked == 1
    with pytest.raises(AddressRefused, match="169.254.169.254"), open_storage(dp) as backend:
        backend.check()
    assert dns.asked == 2


def test_the_setting_allows_link_local_and_private_ranges_stay_allowed(app, fake):
    """Does DEPOT_ALLOW_LINK_LOCAL_DPS let a link-local node through, and are loopback and
    private addresses never refused?"""
    check_address("http://169.254.10.1:8080", "Branch", allow_link_local=True)
    for url in ("http://127.0.0.1:1", "http://10.1.2.3:1", "http://192.168.1.5:1",
                "http://[::1]:1", "http://172.16.0.9:1"):
        check_address(url, "Branch")
    assert _test(fake.url)["version"] == "0.1.0"


def test_a_saved_node_whose_name_now_leads_to_link_local_is_not_sent_the_key(app, fake, admin,
                                                                            monkeypatch):
    """Does a saved DP whose address changed to a link-local one go offline, sent nothing?"""
    dp = dp_management.add_local(admin, "Branch", fake.url, KEY, allow_plain_http=True)
    seen = len(fake.seen)
    monkeypatch.setattr("portal.storage.dpnode.refused_address", lambda address: True)
    dp_management.check_health()
    db.session.expire_all()
    dp = db.session.get(DistributionPoint, dp.id)
    assert dp.status == "offline" and "link-local or cloud metadata" in dp.status_reason
    assert len(fake.seen) == seen


def test_failure_words_never_name_the_exception():
    """Are connection failures told in Depot's words only?"""
    import requests

    assert failure_words(requests.ConnectionError("ConnectionError: http://u:p@x: refused")) \
        == "the connection failed"
    assert failure_words(requests.ReadTimeout("read timed out"), 10) == \
        "it did not answer within 10 s"
    assert failure_words(ConnectionRefusedError(111, "Connection refused")) == \
        "it refused the connection"


def test_a_path_with_direction_characters_is_a_name_like_any_other():
    """Is a file name with a right-to-left override (a legal name) listed, not refused?"""
    entry = answers.entry(answers.FileEntry("Images/a\u202eb.wim", 1, 1), "x")
    assert entry.path == "Images/a\u202eb.wim"
    with pytest.raises(UnreadableAnswer, match="version holds control characters"):
        answers.health(dict(HEALTH, version="1\u202e"), "x")


def test_answers_refuse_bools_floats_and_huge_numbers():
    """Is the shared reader strict on the types of numbers?"""
    assert answers.space(0, 2**63 - 1) == (0, 2**63 - 1)
    assert answers.space(None, None) == (None, None)
    for bad in (True, 1.0, float("nan"), "1", 2**63, -1, [1]):
        with pytest.raises(UnreadableAnswer):
            answers.space(bad, None)
    assert answers.whole("123", "size", digits=True) == 123
    with pytest.raises(answers._Bad):
        answers.whole("1" * 30, "size", digits=True)
