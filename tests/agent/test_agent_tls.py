"""Endpoints downloading from a DP node over HTTPS: the manifest carries the certificate central
pinned for the node, and the agent takes the file from that certificate only."""
import os
import threading

import pytest

from portal.agent.runner import Failed
from portal.agent.transfer import CertificateMismatch, RateCap, TransferError, fetch
from portal.core import tls
from portal.services import dp_management
from tests.factories import write_file
from tests.helpers import copy_one
from tests.node_fixtures import KEY

IMAGE = "Images/Win11.wim"
DATA = b"tls image " * 300


@pytest.fixture
def tls_seattle(app, admin, central, rescan, tls_node, work):
    """The HTTPS node added as Seattle (its certificate pinned), holding the image."""
    write_file(central.root, IMAGE, DATA)
    rescan(central)
    dp = dp_management.add_local(admin, "Seattle", tls_node.url, KEY, "Seattle office")
    work()
    job = copy_one(admin, work, IMAGE, dp)  # the upload through the pinned connection
    assert job.state == "succeeded", job.error
    return dp


def download(item, tmp_path, fingerprint="manifest"):
    partial = str(tmp_path / "partial")
    pin = item.get("tls_fingerprint") if fingerprint == "manifest" else fingerprint
    fetch(item["url"], partial, item["size"], item["sha256"], item["path"], RateCap(),
          lambda: None, lambda _n: None, tls_fingerprint=pin)
    with open(partial, "rb") as fh:
        return fh.read()


def test_manifest_carries_the_pin_and_the_agent_downloads_through_it(
        agent_calls, enroll_secret, tls_seattle, tls_node, deploy, tmp_path):
    """Does a manifest item of an https node link carry the pinned fingerprint, and does the
    agent's download with it get the file (the node's self-signed certificate trusted by pin)?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, tls_seattle, IMAGE)
    [item] = agent_calls.call("GET", f"/deployments/{deployment.id}", token).json["files"]
    assert item["url"].startswith(f"{tls_node.url}/dp/v1/download?")
    assert item["tls_fingerprint"] == tls_node.fingerprint("a")
    assert download(item, tmp_path) == DATA
    shown = tls.display(item["tls_fingerprint"])  # the "AB:CD" form is taken too
    os.remove(tmp_path / "partial")
    assert download(item, tmp_path, shown) == DATA


def test_a_wrong_pin_or_none_gets_no_bytes(agent_calls, enroll_secret, tls_seattle, tls_node,
                                           deploy, tmp_path):
    """Is the download refused before a byte is written when the node presents another
    certificate than the pinned one, and without a pin does a self-signed node fail the CA
    check (a passing error, not a download)?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, tls_seattle, IMAGE)
    [item] = agent_calls.call("GET", f"/deployments/{deployment.id}", token).json["files"]
    with pytest.raises(CertificateMismatch, match=tls_node.fingerprint("a")):
        download(item, tmp_path, "ab" * 32)
    tls_node.serve_with("b")  # the manifest's pin is now the wrong one
    with pytest.raises(CertificateMismatch, match=tls_node.fingerprint("b")):
        download(item, tmp_path)
    with pytest.raises(TransferError, match="CERTIFICATE_VERIFY_FAILED"):
        download(item, tmp_path, None)
    assert not os.path.exists(tmp_path / "partial") or os.path.getsize(tmp_path / "partial") == 0


def test_runner_fails_the_download_on_a_certificate_mismatch(agent_calls, enroll_secret,
                                                             tls_seattle, tls_node, deploy,
                                                             tmp_path):
    """Does the agent's runner pass the manifest's pin to the download and fail (not retry
    forever) when the node's certificate is not the pinned one?"""
    from portal.agent import runner

    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, tls_seattle, IMAGE)
    manifest = agent_calls.call("GET", f"/deployments/{deployment.id}", token).json
    tls_node.serve_with("b")
    agent = type("Agent", (), {"cap": RateCap(), "target": str(tmp_path),
                               "stopping": threading.Event()})()
    run = runner.Runner(agent, deployment.id)
    run.manifest = manifest
    run.reporter = type("Reporter", (), {"cancel": threading.Event()})()
    with pytest.raises(Failed, match="certificate refused: Seattle"):
        run._fetch_with_retries(manifest["files"][0], str(tmp_path / "partial"), "Seattle",
                                lambda _n: None)
