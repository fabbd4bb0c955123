"""DP nodes as real HTTP servers on loopback ports, served in this process (werkzeug, threaded; or
waitress with DEPOT_TEST_DP_SERVER=waitress); the node added as the local DP Seattle; content at
central and at Seattle for deployments. (The node's own process, gunicorn or waitress, is tested
in tests/dpnode/test_node_process.py.)"""
import hashlib
import os

import pytest
import requests

from portal.dpnode import create_node_app
from portal.dpnode.config import NodeConfig
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import dp_management
from tests.factories import write_file
from tests.helpers import copy_one
from tests.servers import TlsLoopback, serve_in_process

KEY = "node-key-0123456789abcdef"
IMAGE = "Images/Win11.wim"  # what `content` puts at central
PACK = "Platform Packs/Dell"


class Node:
    """A running node: its URL, root, and a requests session that sends the key."""

    def __init__(self, url: str, root: str, app=None):
        self.url, self.root, self.app = url, root, app
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {KEY}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.http.request(method, f"{self.url}/dp/v1{path}", **kw)

    def inventory(self) -> list[dict]:
        import json

        response = self.call("GET", "/inventory")
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines()]

    def upload(self, path: str, data: bytes, chunk: int = 1 << 20) -> dict:
        """Send a whole file the way the central server will: create, chunks, finish."""
        created = self.call("POST", "/uploads", json={
            "path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        assert created.status_code in (200, 201), created.text
        uid = created.json()["id"]
        for offset in range(created.json()["offset"], len(data), chunk):
            sent = self.call("PATCH", f"/uploads/{uid}", data=data[offset:offset + chunk],
                             headers={"Upload-Offset": str(offset)})
            assert sent.status_code == 200, sent.text
        finished = self.call("POST", f"/uploads/{uid}/finish")
        assert finished.status_code == 200, finished.text
        return finished.json()

    def file(self, rel: str) -> str:
        return os.path.join(self.root, rel)


class ServedNode(Node):
    """A node served in this process, which a test may stop (the port then refuses connections)
    and start again on the same port."""

    def __init__(self, app, root: str):
        self._served = serve_in_process(app, "dp-node")
        super().__init__("", root, app)
        self.start()

    def start(self) -> None:
        """Serve on the node's port (a new one the first time)."""
        self.url = self._served.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket, as a node that is shut down."""
        self._served.stop()
        self.http.close()  # no kept-alive connection to a handler thread that still answers


@pytest.fixture
def node_settings():
    """Override to change the node's settings for a test."""
    return {"DEPOT_DP_RESERVE_BYTES": 0}


@pytest.fixture
def full_disk(node_settings):
    """Settings of a node whose reserve is its whole disk: nothing more fits, whatever else the
    machine writes meanwhile."""
    import shutil

    node_settings["DEPOT_DP_RESERVE_BYTES"] = shutil.disk_usage("/").total * 4
    return node_settings


@pytest.fixture
def node(tmp_path, node_settings, monkeypatch):
    if os.environ.get("DEPOT_TEST_DP_SERVER") == "waitress":  # and the locks of a Windows node
        monkeypatch.setattr("portal.core.locks.ON_FILE", False)
    root = tmp_path / "node-root"
    root.mkdir()
    config = type("TestNodeConfig", (NodeConfig,),
                  dict(DEPOT_DP_ROOT=str(root), DEPOT_DP_KEY=KEY, TESTING=True, **node_settings))
    served = ServedNode(create_node_app(config), str(root))
    yield served  # served.stop() / served.start(): the node goes away and comes back
    served.stop()


class TlsNode(Node):
    """A node served over HTTPS in this process with a self-signed certificate (`certificates`:
    two pairs, "a" served first); `keyed` counts the requests that reached the node's app with
    a key, so a test can tell that a refused certificate was sent nothing."""

    def __init__(self, app, root: str, certificates: dict):
        self.certificates, self.keyed = certificates, []
        inner = app.wsgi_app

        def counting(environ, start_response):
            if environ.get("HTTP_AUTHORIZATION"):
                self.keyed.append(environ["PATH_INFO"])
            return inner(environ, start_response)

        app.wsgi_app = counting
        self._served = TlsLoopback(app, "tls-node", certificates["a"])
        super().__init__(self._served.start(), root, app)
        self.http.verify = False  # the test client trusts it (warnings below say so)

    def call(self, method: str, path: str, **kw) -> requests.Response:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super().call(method, path, **kw)

    def fingerprint(self, which: str) -> str:
        from portal.core import tls

        return tls.fingerprint_file(self.certificates[which][0])

    def serve_with(self, which: str) -> None:
        """Stop, then serve again on the same port with certificate pair `which`."""
        self._served.stop()
        self._served.certificate = self.certificates[which]
        self.url = self._served.start()

    def stop(self) -> None:
        self._served.stop()
        self.http.close()


@pytest.fixture(scope="session")
def node_certificates(tmp_path_factory):
    """Two self-signed certificate pairs made as `dp-node run --self-signed` makes its own."""
    from portal.dpnode.tls import ensure_self_signed

    return {which: ensure_self_signed(str(tmp_path_factory.mktemp(f"cert-{which}")))
            for which in ("a", "b")}


@pytest.fixture
def tls_node(tmp_path, node_certificates):
    """A DP node serving HTTPS with certificate "a" (see TlsNode)."""
    root = tmp_path / "tls-node-root"
    root.mkdir()
    config = type("TlsNodeConfig", (NodeConfig,), dict(
        DEPOT_DP_ROOT=str(root), DEPOT_DP_KEY=KEY, TESTING=True, DEPOT_DP_RESERVE_BYTES=0))
    served = TlsNode(create_node_app(config), str(root), node_certificates)
    yield served
    served.stop()


@pytest.fixture
def central_node(app):
    """Central's DP node (downloads only, central's root and key) served in this process; the
    app's central links point at it (DEPOT_CENTRAL_DP_URL)."""
    config = type("CentralNodeConfig", (NodeConfig,), dict(
        DEPOT_DP_ROOT=app.config["DEPOT_CENTRAL_ROOT"], DEPOT_DP_KEY=app.config[
            "DEPOT_CENTRAL_DP_KEY"], DEPOT_DP_DOWNLOADS_ONLY=True, TESTING=True))
    served = serve_in_process(create_node_app(config), "central-node")
    app.config["DEPOT_CENTRAL_DP_URL"] = served.start()
    node = Node(served.url, app.config["DEPOT_CENTRAL_ROOT"], served.app)
    node.http.headers["Authorization"] = f"Bearer {app.config['DEPOT_CENTRAL_DP_KEY']}"
    yield node
    served.stop()


@pytest.fixture
def received(node):
    """{"bytes": n}: bytes of upload chunks the `node` has been sent (whole-file chunks and delta
    batches), counted in front of its app."""
    counter = {"bytes": 0}
    inner = node.app.wsgi_app

    def counting(environ, start_response):
        if environ["REQUEST_METHOD"] == "PATCH" or (
                environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/chunks")):
            counter["bytes"] += int(environ.get("CONTENT_LENGTH") or 0)
        return inner(environ, start_response)

    node.app.wsgi_app = counting
    return counter


@pytest.fixture
def seattle(app, admin, node, work):
    """The `node` added as the local DP "Seattle" (site "Seattle office"), its first rescan done."""
    dp = dp_management.add_local(admin, "Seattle", node.url, KEY, "Seattle office",
                                 allow_plain_http=True)
    work()
    return db.session.get(DistributionPoint, dp.id)


@pytest.fixture
def content(central, rescan):
    """An image (IMAGE) and a Platform Pack folder (PACK) at central, hashed."""
    write_file(central.root, IMAGE, b"wim image bytes " * 64)
    write_file(central.root, f"{PACK}/drivers/net.inf", b"[net]")
    write_file(central.root, f"{PACK}/drivers/net.sys", b"driver" * 100)
    rescan(central)
    return central


@pytest.fixture
def seattle_image(content, seattle, admin, work):
    """Seattle holds the image (current) but not the Platform Pack."""
    job = copy_one(admin, work, IMAGE, seattle)
    assert job.state == "succeeded", job.error
    db.session.expire_all()
    return seattle


@pytest.fixture
def seattle_all(seattle_image, admin, work):
    """Seattle holds the image and the Platform Pack, both current."""
    job = copy_one(admin, work, PACK, seattle_image)
    assert job.state == "succeeded", job.error
    db.session.expire_all()
    return seattle_image
