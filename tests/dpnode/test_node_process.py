"""The DP node as its own process: `python -m portal.dpnode run` and `flask --app wsgi dp-node run`
(real gunicorn processes on ports they pick themselves), and what a node process loads."""
import hashlib
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from portal.config import BASE_DIR
from portal.core import signing
from portal.dpnode.cli import MALLOC_SETTINGS
from tests.dpnode.node_process import PYTHON_M_NODE, SERVER, start_node, wait_up
from tests.node_fixtures import KEY
from tests.processes import kill_hard
from tests.servers import log_text

pytestmark = pytest.mark.slow
@pytest.mark.parametrize("key, make_root, message", [
    ("", True, "set DEPOT_DP_KEY to a secret of at least 16 characters"),
    ("short", True, "set DEPOT_DP_KEY to a secret of at least 16 characters"),
    (KEY, False, "does not exist or is not a folder"),
])
@pytest.mark.parametrize("command", [None, PYTHON_M_NODE], ids=["flask", "python-m"])
def test_node_refuses_to_start_without_key_or_root(tmp_path, key, make_root, message, command):
    """Does either node command stop at once with a clear message when its key or root is
    unusable?"""
    root = tmp_path / "root"
    if make_root:
        root.mkdir()
    proc = start_node(root, tmp_path / "node.log", key=key, command=command)
    assert proc.wait(timeout=60) != 0
    assert message in log_text(tmp_path / "node.log")


def test_partial_upload_survives_a_killed_node(tmp_path):
    """If the node is killed with SIGKILL mid-upload, does it resume from its offset after restart?"""
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(3 * 1024 * 1024)
    proc = start_node(root, tmp_path / "node-1.log")
    try:
        node = wait_up(proc, tmp_path / "node-1.log", root)
        uid = node.call("POST", "/uploads", json={
            "path": "Images/Win11.wim", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        }).json()["id"]
        node.call("PATCH", f"/uploads/{uid}", data=data[:2 * 1024 * 1024], headers={"Upload-Offset": "0"})
    finally:
        kill_hard(proc)
    assert not os.path.exists(root / "Images" / "Win11.wim")

    proc = start_node(root, tmp_path / "node-2.log")
    try:
        node = wait_up(proc, tmp_path / "node-2.log", root)  # another port: the state is on disk
        assert node.call("GET", f"/uploads/{uid}").json()["offset"] == 2 * 1024 * 1024
        assert node.upload("Images/Win11.wim", data)["size"] == len(data)
        assert (root / "Images" / "Win11.wim").read_bytes() == data
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_python_m_node_serves_without_the_console(tmp_path):
    """Does `python -m portal.dpnode run` serve a root (health, inventory) as the documented way to
    start a node on a branch server, and stop on SIGTERM?"""
    root = tmp_path / "root"
    (root / "Images").mkdir(parents=True)
    (root / "Images" / "a.wim").write_bytes(b"wim")
    proc = start_node(root, tmp_path / "node.log", command=PYTHON_M_NODE)
    try:
        node = wait_up(proc, tmp_path / "node.log", root)
        files = [r for r in node.inventory() if r["type"] == "file"]
        assert [(f["path"], f["sha256"]) for f in files] == [
            ("Images/a.wim", hashlib.sha256(b"wim").hexdigest())]
        if SERVER == "gunicorn":  # it runs with malloc keeping the buffers it frees
            with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                environ = dict(item.split(b"=", 1) for item in fh.read().split(b"\0")
                               if b"=" in item)
            assert {k: environ.get(k.encode(), b"").decode() for k in MALLOC_SETTINGS} == \
                MALLOC_SETTINGS
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_the_access_log_keeps_no_signature(tmp_path):
    """Does a node's log (gunicorn's access log; waitress writes none) show a download's path
    and expiry but not its signature, which would let whoever reads the log download the file
    for the rest of the hour?"""
    root = tmp_path / "root"
    (root / "Images").mkdir(parents=True)
    (root / "Images" / "a.wim").write_bytes(b"wim")
    log_path = tmp_path / "node.log"
    proc = start_node(root, log_path)
    try:
        node = wait_up(proc, log_path, root)
        link = signing.sign(signing.DP_NODE, node.url, KEY, "Images/a.wim", 3600)
        sig = parse_qs(urlsplit(link).query)["sig"][0]
        assert requests.get(link, timeout=30).content == b"wim"
        forged = link.replace(sig, "0" * 64)
        assert requests.get(forged, timeout=30).status_code == 403
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    logged = log_text(log_path)
    assert sig not in logged and "0" * 64 not in logged
    if SERVER == "gunicorn":
        lines = [line for line in logged.splitlines() if "/dp/v1/download?" in line]
        assert len(lines) == 2, logged
        assert all("path=Images%2Fa.wim&expires=" in line and "&sig=[redacted] " in line
                   for line in lines)
        # gunicorn's workers write their lines in whichever order they finish.
        assert sorted(re.search(r'" (\d{3}) ', line).group(1) for line in lines) == ["200", "403"]


LEAN_PROBE = """
import importlib.metadata, json, os, sys, time
at_start = set(sys.modules)  # what the interpreter itself loaded (site, .pth hooks)
started = time.perf_counter()
from portal.dpnode import create_node_app
from portal.dpnode.config import NodeConfig
app = create_node_app(type("C", (NodeConfig,), {"DEPOT_DP_ROOT": sys.argv[1],
                                                 "DEPOT_DP_KEY": "k" * 20}))
built = time.perf_counter() - started
dists = importlib.metadata.packages_distributions()
third_party = sorted({d for name in set(sys.modules) - at_start if "." not in name
                      for d in dists.get(name, ())})
print(json.dumps({"modules": sorted(sys.modules), "dists": third_party, "seconds": built}))
"""


def test_a_node_process_loads_no_console_stack(tmp_path):
    """Does a fresh interpreter that builds the node app load none of SQLAlchemy, RQ, Redis,
    Authlib, Alembic, boto3 or requests, and only packages that requirements-dpnode.txt names?"""
    out = subprocess.run([sys.executable, "-c", LEAN_PROBE, str(tmp_path)], cwd=str(BASE_DIR),
                         capture_output=True, check=True, timeout=120).stdout
    probe = json.loads(out.splitlines()[-1])
    heavy = {"sqlalchemy", "flask_sqlalchemy", "rq", "redis", "authlib", "alembic", "boto3",
             "botocore", "requests", "flask_wtf", "flask_login", "quickxorhash"}
    assert heavy.isdisjoint(probe["modules"])
    wanted = _requirements(BASE_DIR / "requirements-dpnode.txt")
    assert {d.lower() for d in probe["dists"]} <= wanted, "requirements-dpnode.txt lacks a package"
    print(f"node app built in {probe['seconds']:.3f} s")  # docs/architecture.md quotes it


def _requirements(path) -> set[str]:
    """The distributions a requirements file pins, with the ones those pull in (Flask's own)."""
    names = set()
    with open(path) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[=<>\[ ;]", line)[0].lower())
    pulled = set()
    for name in names:
        for req in importlib.metadata.requires(name) or ():
            if "extra ==" not in req:
                pulled.add(re.split(r"[=<>!~\[ ;(]", req)[0].lower())
    return names | pulled
