"""A DP node's content: confinement to the library folders, inventory, deletes and signed downloads."""
import hashlib
import os
import time

import pytest
import requests

from portal.core import signing
from tests.factories import write_file
from tests.node_fixtures import KEY

TRAVERSALS = [
    ("../outside.wim", "'..'"),
    ("Images/../../outside.wim", "'..'"),
    ("/etc/passwd", "relative to the root"),
    ("Images//x.wim", "empty"),
    ("Other folder/x.wim", "must start with a library folder"),
    ("Images", "inside a library"),
    (".depot/uploads/x.part", "must start with a library folder"),
    ("Images/escape/x.wim", "leads out of its library folder"),
    ("Images/\\x2e\\x2e/\\x2e\\x2e", "'..'"),  # '..' written as escapes
    ("Images/\\u002e\\u002e", "'..'"),
    ("Images/\\x2e", "'.'"),
    ("Images/\\xZZ.wim", "an escape that means nothing"),
    ("Images/\\udc80.wim", "an escape that means nothing"),
]


@pytest.fixture
def escape_link(node, tmp_path):
    """Images/escape -> a folder outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, node.file("Images/escape"))
    return outside


@pytest.mark.parametrize("path, reason", TRAVERSALS)
def test_uploads_are_confined_to_the_library_folders(node, escape_link, path, reason):
    """Are absolute paths, '..', other folders and symlinks out of the root refused, writing nothing?"""
    response = node.call("POST", "/uploads", json={"path": path, "size": 1, "sha256": "0" * 64})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_path"
    assert reason in response.json()["error"]["message"]
    assert os.listdir(escape_link) == []
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == []


@pytest.mark.parametrize("path, reason", TRAVERSALS)
def test_deletes_are_confined_to_the_library_folders(node, escape_link, path, reason):
    """Can a delete reach anything outside the library folders? (It must not.)"""
    (escape_link / "x.wim").write_bytes(b"keep me")
    response = node.call("DELETE", "/content", params={"path": path})
    assert response.status_code == 400 and reason in response.json()["error"]["message"]
    assert (escape_link / "x.wim").read_bytes() == b"keep me"


def test_delete_removes_file_and_folder_assets(node):
    """Does a delete remove a file asset, a folder asset with all under it, and 404 what is absent?"""
    write_file(node.root, "Images/old.wim", b"o")
    write_file(node.root, "Platform Packs/Dell/drivers/a.inf", b"a")
    assert node.call("DELETE", "/content", params={"path": "Images/old.wim"}).json() == {
        "deleted": "Images/old.wim"}
    assert node.call("DELETE", "/content", params={"path": "Platform Packs/Dell"}).status_code == 200
    assert not os.path.exists(node.file("Images/old.wim"))
    assert not os.path.exists(node.file("Platform Packs/Dell"))
    assert os.path.isdir(node.file("Platform Packs"))
    missing = node.call("DELETE", "/content", params={"path": "Images/old.wim"})
    assert missing.status_code == 404 and "not at this DP" in missing.json()["error"]["message"]


def test_deleting_a_symlink_removes_the_link_not_its_target(node, escape_link):
    """Does deleting a symlinked folder remove the link and leave what it points at?"""
    (escape_link / "x.wim").write_bytes(b"keep me")
    assert node.call("DELETE", "/content", params={"path": "Images/escape"}).status_code == 200
    assert not os.path.lexists(node.file("Images/escape"))
    assert (escape_link / "x.wim").read_bytes() == b"keep me"


def by_path(records):
    return {r["path"]: r for r in records if r["type"] == "file"}


def test_inventory_hashes_only_what_changed(node):
    """Does the node list hand-copied files with their SHA-256, hashing each version only once?"""
    write_file(node.root, "Images/hand-copied.wim", b"by hand")
    write_file(node.root, "Application Packs/Office/setup.exe", b"office")
    write_file(node.root, b"Media/bad\xffname.iso", b"odd")
    first = node.inventory()
    assert first[0] == {"type": "start", "files": 3, "files_to_hash": 3, "bytes_to_hash": 16}
    assert first[-1]["type"] == "end" and first[-1]["files"] == 3 and first[-1]["free_bytes"] > 0
    files = by_path(first)
    assert files["Images/hand-copied.wim"]["sha256"] == hashlib.sha256(b"by hand").hexdigest()
    assert "Media/bad\\xffname.iso" in files

    second = node.inventory()
    assert second[0]["files_to_hash"] == 0
    assert by_path(second) == files

    write_file(node.root, "Images/hand-copied.wim", b"changed by hand", mtime_ns=10**18)
    os.remove(node.file("Application Packs/Office/setup.exe"))
    third = node.inventory()
    assert (third[0]["files"], third[0]["files_to_hash"]) == (2, 1)
    files = by_path(third)
    assert files["Images/hand-copied.wim"]["sha256"] == hashlib.sha256(b"changed by hand").hexdigest()
    assert "Application Packs/Office/setup.exe" not in files


def test_uploaded_files_are_not_hashed_again_by_the_inventory(node):
    """Does the inventory take an uploaded file's hash from its upload instead of hashing it
    again?"""
    node.upload("Images/Win11.wim", b"W" * 5000)
    records = node.inventory()
    assert records[0]["files_to_hash"] == 0
    assert by_path(records)["Images/Win11.wim"]["sha256"] == hashlib.sha256(b"W" * 5000).hexdigest()


def test_inventory_notes_what_it_skips(node, escape_link):
    """Are a symlink out of the root and an unreadable file reported, the scan going on?"""
    (escape_link / "secret.wim").write_bytes(b"secret")
    os.symlink(escape_link / "secret.wim", node.file("Images/secret-link.wim"))
    write_file(node.root, "Images/fine.wim", b"fine")
    records = node.inventory()
    assert set(by_path(records)) == {"Images/fine.wim"}
    problems = [r["message"] for r in records if r["type"] == "problem"]
    assert any("secret-link.wim: symlink leads out of the content root" in p for p in problems)
    assert records[-1]["type"] == "end"


# --- downloads ------------------------------------------------------------------------------

@pytest.fixture
def image(node):
    data = os.urandom(300_000)
    node.upload("Images/Win11.wim", data)
    return data


def link(node, path="Images/Win11.wim", ttl=300, key=KEY):
    return signing.sign(signing.DP_NODE, node.url, key, path, ttl)


def test_signed_link_downloads_with_strong_etag(node, image):
    """Does a signed link serve the file, without the DP key, with its SHA-256 as strong ETag?"""
    response = requests.get(link(node), timeout=30)
    assert response.status_code == 200
    assert response.content == image
    assert response.headers["ETag"] == f'"{hashlib.sha256(image).hexdigest()}"'
    assert response.headers["Accept-Ranges"] == "bytes"


def test_range_and_conditional_requests(node, image):
    """Do Range (206), If-None-Match (304) and a stale If-Range (whole file) behave as HTTP says?"""
    etag = f'"{hashlib.sha256(image).hexdigest()}"'
    part = requests.get(link(node), headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert part.status_code == 206 and part.content == image[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(image)}"
    tail = requests.get(link(node), headers={"Range": "bytes=299000-"}, timeout=30)
    assert tail.content == image[299000:]
    assert requests.get(link(node), headers={"If-None-Match": etag}, timeout=30).status_code == 304
    resumed = requests.get(link(node), headers={"Range": "bytes=10-", "If-Range": '"stale"'},
                           timeout=30)
    assert resumed.status_code == 200 and resumed.content == image
    beyond = requests.get(link(node), headers={"Range": "bytes=900000-"}, timeout=30)
    assert beyond.status_code == 416


def test_expired_forged_and_redirected_links_are_refused(node, image):
    """Are an expired link, a wrong signature, and a link re-pointed at another file refused?"""
    expired = signing.sign(signing.DP_NODE, node.url, KEY, "Images/Win11.wim", -5)
    response = requests.get(expired, timeout=30)
    assert response.status_code == 403 and "expired" in response.json()["error"]["message"]
    forged = requests.get(link(node, key="another-key-0123456789"), timeout=30)
    assert forged.status_code == 403 and "signature" in forged.json()["error"]["message"]
    write_file(node.root, "Images/other.wim", b"other")
    repointed = link(node).replace("Win11.wim", "other.wim")
    assert requests.get(repointed, timeout=30).status_code == 403
    assert requests.get(f"{node.url}/dp/v1/download?path=Images/Win11.wim", timeout=30).status_code == 403


def test_signed_link_cannot_escape_the_root(node, escape_link):
    """Is a signed link through a symlink out of the root a 400, and one to a missing file a 404?"""
    (escape_link / "x.wim").write_bytes(b"secret")
    response = requests.get(link(node, "Images/escape/x.wim"), timeout=30)
    assert response.status_code == 400
    assert requests.get(link(node, "Images/missing.wim"), timeout=30).status_code == 404


def test_hand_copied_file_downloads_without_an_etag_until_scanned(node):
    """Does a file copied in by hand download without an ETag until the inventory has hashed it?"""
    write_file(node.root, "Images/hand.wim", b"hand")
    assert "ETag" not in requests.get(link(node, "Images/hand.wim"), timeout=30).headers
    node.inventory()
    response = requests.get(link(node, "Images/hand.wim"), timeout=30)
    assert response.headers["ETag"] == f'"{hashlib.sha256(b"hand").hexdigest()}"'


def test_link_expiry_is_checked_against_now(node, image):
    """Is a link whose expiry has passed refused with a 403?"""
    soon = signing.sign(signing.DP_NODE, node.url, KEY, "Images/Win11.wim", 1, now=time.time() - 5)
    assert requests.get(soon, timeout=30).status_code == 403


@pytest.fixture
def behind_nginx(node_settings):
    node_settings["DEPOT_DP_X_ACCEL_PREFIX"] = "/depot-files/"
    return node_settings


def test_behind_nginx_the_node_only_says_which_file(behind_nginx, node, image):
    """With an X-Accel prefix set, does a good link answer with X-Accel-Redirect and the ETag only?"""
    response = requests.get(link(node), timeout=30)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["X-Accel-Redirect"] == "/depot-files/Images/Win11.wim"
    assert response.headers["ETag"] == f'"{hashlib.sha256(image).hexdigest()}"'
    assert requests.get(signing.sign(signing.DP_NODE, node.url, KEY, "Images/Win11.wim", -5), timeout=30).status_code == 403


def test_a_link_with_a_non_ascii_signature_is_refused(node, image):
    """Is a link whose signature has non-ASCII characters a 403, not a server error?"""
    url = link(node)[:-3] + "%C3%A9%C3%A9"
    assert requests.get(url, timeout=30).status_code == 403


@pytest.fixture
def not_a_node():
    """A web server on a loopback port that is not a DP node: HTML at /dp/v1/health, and a
    redirect at /redirect/dp/v1/health."""
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    @Request.application
    def app(request):
        if request.path.startswith("/redirect/"):
            return Response(status=302, headers={"Location": "http://169.254.169.254/"})
        return Response("<html>Please sign in</html>", mimetype="text/html")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_a_url_that_is_not_a_node_gets_a_clear_message(app, not_a_node):
    """Does a web page or a redirect where a DP node should be give a message, not a crash?"""
    from portal.core.errors import DepotError
    from portal.services import dp_management

    with pytest.raises(DepotError, match="did not answer like a DP node"):
        dp_management.test_connection(not_a_node, KEY, "Seattle", allow_plain_http=True)
    with pytest.raises(DepotError, match="answered with a redirect"):
        dp_management.test_connection(f"{not_a_node}/redirect", KEY, "Seattle",
                                      allow_plain_http=True)


def test_a_scan_waiting_for_another_says_it_is_alive(node, monkeypatch):
    """While another scan holds the root, does the inventory keep its listener informed, then run?"""
    from portal.core import locks
    from portal.dpnode import inventory

    monkeypatch.setattr(inventory, "KEEPALIVE_SECONDS", 0.2)
    write_file(node.root, "Images/a.wim", b"a")
    lock_path = os.path.join(node.root, ".depot", "inventory.lock")
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    with locks.open_locked(lock_path, os.O_RDWR | os.O_CREAT):
        records = inventory.scan(node.root)
        first = next(records)
        assert first == {"type": "waiting", "reason": "another scan of this root is running"}
    rest = list(records)
    assert [r["type"] for r in rest if r["type"] != "waiting"][:2] == ["start", "file"]
    assert rest[-1]["type"] == "end"


def assert_node_headers(response, no_store=True):
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "sandbox" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert (response.headers.get("Cache-Control") == "no-store") is no_store


def test_every_answer_carries_the_security_headers(node):
    """Do the health check, the inventory, an error and a refused link carry the node's headers
    and no-store, and a download the headers with its revalidation (no-store would not hurt it,
    but a link is checked on every revalidation anyway)?"""
    write_file(node.root, "Images/Win11.wim", b"w" * 100)
    assert_node_headers(node.call("GET", "/health"))
    assert_node_headers(node.call("GET", "/inventory"))
    assert_node_headers(requests.get(f"{node.url}/dp/v1/health", timeout=30))
    assert_node_headers(node.call("GET", "/nowhere"))
    assert_node_headers(requests.get(link(node, ttl=-5), timeout=30))
    download = requests.get(link(node), timeout=30)
    assert download.status_code == 200 and download.content == b"w" * 100
    assert_node_headers(download, no_store=False)
