"""`flask --app wsgi dp-node run`: the documented command, as a real gunicorn process."""
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from portal.config import BASE_DIR
from portal.launcher import descendants
from tests.node_fixtures import KEY, Node

pytestmark = pytest.mark.slow
FLASK = os.path.join(os.path.dirname(sys.executable), "flask")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_node(root, port, key=KEY, log_path=None):
    """The node command in its own process group; output to `log_path`, else to a pipe."""
    env = dict(os.environ, DEPOT_DP_KEY=key, DEPOT_DP_RESERVE_BYTES="0")
    argv = [FLASK, "--app", "wsgi", "dp-node", "run", "--root", str(root),
            "--bind", f"127.0.0.1:{port}"]
    if log_path is None:
        return subprocess.Popen(argv, env=env, cwd=str(BASE_DIR), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, env=env, cwd=str(BASE_DIR), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_up(node: Node, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if node.call("GET", "/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, "the node exited while starting"
        time.sleep(0.2)
    raise AssertionError("the node did not start")


def kill_hard(proc):
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


@pytest.mark.parametrize("key, make_root, message", [
    ("", True, "set DEPOT_DP_KEY to a secret of at least 16 characters"),
    ("short", True, "set DEPOT_DP_KEY to a secret of at least 16 characters"),
    (KEY, False, "does not exist or is not a folder"),
])
def test_node_refuses_to_start_without_key_or_root(tmp_path, key, make_root, message):
    """Does the node command stop at once with a clear message when its key or root is unusable?"""
    root = tmp_path / "root"
    if make_root:
        root.mkdir()
    proc = start_node(root, free_port(), key=key)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert message in output.decode()


def test_partial_upload_survives_a_killed_node(tmp_path):
    """If the node is killed with SIGKILL mid-upload, does it resume from its offset after restart?"""
    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    node = Node(f"http://127.0.0.1:{port}", str(root))
    data = os.urandom(3 * 1024 * 1024)
    proc = start_node(root, port, log_path=tmp_path / "node-1.log")
    try:
        wait_up(node, proc)
        uid = node.call("POST", "/uploads", json={
            "path": "Images/Win11.wim", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        }).json()["id"]
        node.call("PATCH", f"/uploads/{uid}", data=data[:2 * 1024 * 1024], headers={"Upload-Offset": "0"})
    finally:
        kill_hard(proc)
    assert not os.path.exists(root / "Images" / "Win11.wim")

    proc = start_node(root, port, log_path=tmp_path / "node-2.log")
    try:
        wait_up(node, proc)
        assert node.call("GET", f"/uploads/{uid}").json()["offset"] == 2 * 1024 * 1024
        assert node.upload("Images/Win11.wim", data)["size"] == len(data)
        assert (root / "Images" / "Win11.wim").read_bytes() == data
    finally:
        proc.terminate()
        proc.wait(timeout=20)
