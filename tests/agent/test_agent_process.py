"""Real agent processes (`python -m portal.agent`) against the test's app on a loopback port:
deployments from central, a DP node and S3 (presigned links), cancel, kill -9 and resume, a file
corrupted at the DP, a copy changed after creation, and a real WIM applied with wimlib-imagex."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Deployment, Device
from portal.services import agent_deployments, deployments, devices
from tests.factories import write_file
from tests.helpers import copy_one, wait_for
from tests.processes import AgentProcess

pytestmark = pytest.mark.slow
KiB = 1024


def device_named(hostname):
    """The device an agent enrolled under this hostname, or None."""
    return db.session.scalars(select(Device).where(Device.name == hostname)).first()


def fresh(deployment_id) -> Deployment:
    """The deployment row as the database has it now."""
    db.session.expire_all()
    return db.session.get(Deployment, deployment_id)


def enrolled(start_agent, name="a1", *extra, env=None):
    """Run an agent once (it enrolls, finds no work, exits): its device."""
    agent = start_agent("--once", *extra, name=name, env=env)
    assert agent.wait(60) == 0, agent.log
    return device_named(f"pc-{name}")


def stopped_mid_download(central, rescan, start_agent, deploy, tmp_path):
    """A 1 MiB image deployed from central to agent a1, which SIGTERM stopped part of the way
    through (rate-capped): (image, deployment, its partial file, the stopped agent)."""
    image = os.urandom(1024 * KiB)
    write_file(central.root, "Images/Win11.img", image)
    rescan(central)
    device = enrolled(start_agent)
    deployment = deploy(device.id, central, "Images/Win11.img")
    agent = start_agent("--max-rate", str(256 * KiB))
    partial = tmp_path / "a1" / ".partial" / hashlib.sha256(image).hexdigest()
    wait_for(lambda: partial.exists() and partial.stat().st_size > 0, timeout=60,
             message="a partial download")
    agent.signal(signal.SIGTERM)
    assert agent.wait(60) == 0, agent.log
    return image, deployment, partial, agent


def image_at_seattle(data, central, rescan, seattle, admin, work):
    """Images/Win11.img with these bytes at central and, copied there and rescanned, current at
    the DP node Seattle."""
    write_file(central.root, "Images/Win11.img", data)
    rescan(central)
    assert copy_one(admin, work, "Images/Win11.img", seattle).state == "succeeded"
    rescan(seattle)


def staged(tmp_path, deployment, path, name="a1"):
    """Where agent `name` stages `path` of the deployment."""
    return tmp_path / name / "staged" / str(deployment.id) / path


def test_deployment_from_central(central, rescan, start_agent, deploy, tmp_path):
    """Does an agent (the zipapp, then `python -m portal.agent`) enroll, keep its token (mode
    0600) across runs, download an image and a Platform Pack from central, verify and stage them
    under their library paths (dropping an earlier deployment's), and report 'image staged' when
    wimlib-imagex is not on its PATH?"""
    image = os.urandom(300 * KiB)
    write_file(central.root, "Images/Win11.wim", image)
    write_file(central.root, "Platform Packs/Dell/drivers/a.inf", b"driver a")
    rescan(central)
    device = enrolled(start_agent)
    token_file = tmp_path / "a1" / ".depot-agent" / "device.json"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    deployment = deploy(device.id, central, "Images/Win11.wim", "Platform Packs/Dell")
    earlier = tmp_path / "a1" / "staged" / "999" / "Images" / "Old.wim"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"an earlier deployment's image")
    no_wimlib = {"PATH": os.path.dirname(sys.executable)}  # the venv's bin: no wimlib-imagex
    agent = start_agent("--once", env=no_wimlib, module=True)  # the documented command
    assert agent.wait(60) == 0, agent.log
    done = fresh(deployment.id)
    assert done.state == "succeeded", (done.error, agent.log)
    assert done.phase == "image staged (no wimlib-imagex)"
    assert done.bytes_done == done.bytes_total == len(image) + 8
    assert done.started_at and done.finished_at
    assert staged(tmp_path, done, "Images/Win11.wim").read_bytes() == image
    assert staged(tmp_path, done, "Platform Packs/Dell/drivers/a.inf").read_bytes() == b"driver a"
    assert not list((tmp_path / "a1" / ".partial").iterdir())
    assert db.session.scalar(select(db.func.count(Device.id))) == 1  # enrolled once
    assert "Images/Win11.wim: verified" in agent.log
    # Its stderr is a file, not a terminal: progress as plain log lines, no ANSI redraws.
    assert " INFO Platform Packs/Dell/drivers/a.inf 100% 300.0 KiB of 300.0 KiB" in agent.log
    assert "\x1b[" not in agent.log
    assert not earlier.parent.parent.exists()  # staged files of an earlier deployment went


def test_deployment_from_a_dp_node(central, rescan, seattle, admin, work, start_agent, deploy,
                                   tmp_path, node):
    """Does an agent download from the DP node the deployment names (its signed links), not
    from central?"""
    image = os.urandom(200 * KiB)
    image_at_seattle(image, central, rescan, seattle, admin, work)
    served = []
    inner = node.app.wsgi_app

    def counting(environ, start_response):
        served.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    node.app.wsgi_app = counting
    device = enrolled(start_agent)
    deployment = deploy(device.id, seattle, "Images/Win11.img")
    agent = start_agent("--once")
    assert agent.wait(60) == 0, agent.log
    assert fresh(deployment.id).state == "succeeded", agent.log
    assert staged(tmp_path, deployment, "Images/Win11.img").read_bytes() == image
    assert "/dp/v1/download" in served
    assert "from Seattle" in agent.log


def test_deployment_from_s3_through_a_presigned_link(central, rescan, s3_dp, admin, work,
                                                     start_agent, deploy, tmp_path, s3):
    """Does an agent download from an S3 DP through presigned links (moto over HTTP)?"""
    image = os.urandom(150 * KiB)
    write_file(central.root, "Images/Win11.img", image)
    write_file(central.root, "Answer Files/unattend.xml", b"<unattend/>")
    rescan(central)
    for key in ("Images/Win11.img", "Answer Files/unattend.xml"):
        assert copy_one(admin, work, key, s3_dp).state == "succeeded"
    rescan(s3_dp)
    s3.forget_requests()
    device = enrolled(start_agent)
    deployment = deploy(device.id, s3_dp, "Images/Win11.img", "Answer Files/unattend.xml")
    agent = start_agent("--once")
    assert agent.wait(60) == 0, agent.log
    assert fresh(deployment.id).state == "succeeded", agent.log
    assert staged(tmp_path, deployment, "Images/Win11.img").read_bytes() == image
    assert staged(tmp_path, deployment, "Answer Files/unattend.xml").read_bytes() == b"<unattend/>"
    assert s3.calls[("GET", "object")] >= 2


def test_cancel_during_download_stops_the_agent(central, rescan, start_agent, deploy, tmp_path,
                                                admin):
    """Does a cancel asked for while the agent downloads (slowly: --max-rate) stop it within
    seconds, end the deployment cancelled and remove its partial and staged files?"""
    write_file(central.root, "Images/Big.img", os.urandom(2048 * KiB))
    rescan(central)
    device = enrolled(start_agent)
    deployment = deploy(device.id, central, "Images/Big.img")
    agent = start_agent("--max-rate", str(128 * KiB))
    wait_for(lambda: fresh(deployment.id).bytes_done > 0, timeout=60,
             message="the agent to report bytes")
    deployments.cancel_deployment(admin, deployment.id)  # what the console's Cancel calls
    wait_for(lambda: fresh(deployment.id).state == "cancelled", timeout=60,
             message="the agent to confirm the cancel")
    assert fresh(deployment.id).bytes_done < fresh(deployment.id).bytes_total
    wait_for(lambda: "cancel asked for" in agent.log, timeout=60, message="the agent's log")
    assert not list((tmp_path / "a1" / ".partial").iterdir())
    assert not staged(tmp_path, deployment, "Images/Big.img").exists()
    agent.signal(signal.SIGTERM)
    assert agent.wait(60) == 0
    assert "stopping (SIGTERM)" in agent.log


def test_agent_killed_mid_download_resumes(central, rescan, start_agent, deploy, tmp_path,
                                           central_node):
    """After a kill -9 mid-download, does the restarted agent resume from the partial file's
    offset (a Range request for the rest only) and succeed with a whole, verified file?"""
    image = os.urandom(1024 * KiB)
    write_file(central.root, "Images/Win11.img", image)
    rescan(central)
    ranges = []
    inner = central_node.app.wsgi_app

    def recording(environ, start_response):
        if environ["PATH_INFO"] == "/dp/v1/download":
            ranges.append(environ.get("HTTP_RANGE"))
        return inner(environ, start_response)

    central_node.app.wsgi_app = recording
    device = enrolled(start_agent)
    deployment = deploy(device.id, central, "Images/Win11.img")
    agent = start_agent("--max-rate", str(128 * KiB))
    partial = tmp_path / "a1" / ".partial" / hashlib.sha256(image).hexdigest()
    wait_for(lambda: partial.exists() and partial.stat().st_size >= 256 * KiB, timeout=60,
             message="a partial download")
    agent.signal(signal.SIGKILL)
    agent.wait(60)
    kept = partial.stat().st_size
    assert 0 < kept < len(image)
    assert fresh(deployment.id).state == "downloading"
    again = start_agent("--once", name="a1")
    assert again.wait(60) == 0, again.log
    assert fresh(deployment.id).state == "succeeded", again.log
    assert staged(tmp_path, deployment, "Images/Win11.img").read_bytes() == image
    resumed_at = int(again.log.split("Images/Win11.img: resuming at byte ")[1].split()[0])
    assert kept <= resumed_at < len(image)
    assert ranges == [None, f"bytes={resumed_at}-"]


def test_file_corrupted_at_the_dp_fails_with_hash_mismatch(central, rescan, seattle, admin, work,
                                                           start_agent, deploy, node, tmp_path):
    """When a file at the DP node was damaged after its scan (same size), does the agent fail
    the deployment with 'hash mismatch: <path> at Seattle' and keep nothing of it?"""
    image_at_seattle(b"a" * 50 * KiB, central, rescan, seattle, admin, work)
    device = enrolled(start_agent)
    deployment = deploy(device.id, seattle, "Images/Win11.img")
    with open(node.file("Images/Win11.img"), "r+b") as fh:
        fh.seek(1000)
        fh.write(b"X")
    agent = start_agent("--once")
    assert agent.wait(60) == 1, agent.log
    done = fresh(deployment.id)
    assert done.state == "failed"
    assert done.error.startswith("hash mismatch: Images/Win11.img at Seattle"), done.error
    assert not list((tmp_path / "a1" / ".partial").iterdir())
    assert not staged(tmp_path, deployment, "Images/Win11.img").exists()


def test_copy_changed_after_creation_fails_the_deployment(central, rescan, start_agent, deploy):
    """When central's copy changed (and was rescanned) after the deployment was made, does the
    agent get deployment_changed and the deployment fail with the reason, nothing mixed?"""
    write_file(central.root, "Images/Win11.img", b"1" * 10 * KiB)
    rescan(central)
    device = enrolled(start_agent)
    deployment = deploy(device.id, central, "Images/Win11.img")
    write_file(central.root, "Images/Win11.img", b"2" * 10 * KiB)
    rescan(central)
    agent = start_agent("--once")
    assert agent.wait(60) == 0, agent.log
    done = fresh(deployment.id)
    assert done.state == "failed"
    assert done.error == ("the copy of Images/Win11.img at Central changed after this deployment "
                          "was created; deploy again")
    assert "deploy again" in agent.log


def test_real_wim_is_applied(central, rescan, start_agent, deploy, tmp_path):
    """With wimlib-imagex installed, is a real WIM image applied into <target>/applied/, the
    deployment passing through 'applying' to succeeded?"""
    wimlib = shutil.which("wimlib-imagex")
    if not wimlib:
        pytest.skip("wimlib-imagex is not installed (apt-get install wimtools)")
    source = tmp_path / "reference"
    write_file(str(source), "Windows/System32/config.txt", b"configured")
    write_file(str(source), "Users/readme.md", b"hello")
    wim = tmp_path / "ref.wim"
    subprocess.run([wimlib, "capture", str(source), str(wim)], check=True, capture_output=True)
    write_file(central.root, "Images/Ref.wim", wim.read_bytes())
    rescan(central)
    device = enrolled(start_agent)
    deployment = deploy(device.id, central, "Images/Ref.wim")
    agent = start_agent("--once")
    assert agent.wait(60) == 0, agent.log
    done = fresh(deployment.id)
    assert done.state == "succeeded", (done.error, agent.log)
    applied = tmp_path / "a1" / "applied"
    assert done.phase == f"image applied to {applied}"
    assert (applied / "Windows" / "System32" / "config.txt").read_bytes() == b"configured"
    assert (applied / "Users" / "readme.md").read_bytes() == b"hello"
    assert "applying Images/Ref.wim" in agent.log


def test_agent_with_config_file_and_bad_token_exits_clearly(server, start_agent, tmp_path):
    """Does an agent given an installer config with a bad enrollment token exit with code 2 and
    say why, leaving no token behind?"""
    import json

    config = tmp_path / "depot-agent.json"
    config.write_text(json.dumps({"server": server, "enroll_token": "det_wrong"}))
    agent = start_agent("--config", str(config), enroll=False)
    assert agent.wait(60) == 2
    assert "enrollment refused" in agent.log and "unknown" in agent.log
    assert not (tmp_path / "a1" / ".depot-agent" / "device.json").exists()


def test_refused_link_makes_the_agent_ask_for_fresh_links(central, rescan, start_agent, deploy,
                                                         tmp_path, app, central_node):
    """When the DP refuses a link (403, as an expired one is), does the agent ask the server for
    a new manifest and finish with the fresh links?"""
    image = os.urandom(64 * KiB)
    write_file(central.root, "Images/Win11.img", image)
    rescan(central)
    seen = {"manifests": 0, "refused": 0}
    inner, node_inner = app.wsgi_app, central_node.app.wsgi_app

    def counting(environ, start_response):
        path = environ["PATH_INFO"]
        if path.startswith("/agent/v1/deployments/") and not path.endswith("/progress"):
            seen["manifests"] += 1
        return inner(environ, start_response)

    def refusing_once(environ, start_response):  # central's node, where central's links go
        if environ["PATH_INFO"] == "/dp/v1/download" and not seen["refused"]:
            seen["refused"] += 1
            body = b'{"error": {"code": "link_refused", "message": "the download link has expired"}}'
            start_response("403 FORBIDDEN", [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        return node_inner(environ, start_response)

    app.wsgi_app, central_node.app.wsgi_app = counting, refusing_once
    device = enrolled(start_agent)
    deployment = deploy(device.id, central, "Images/Win11.img")
    agent = start_agent("--once")
    assert agent.wait(60) == 0, agent.log
    assert fresh(deployment.id).state == "succeeded", agent.log
    assert seen == {"manifests": 2, "refused": 1}
    assert "asking the server for fresh links" in agent.log
    assert staged(tmp_path, deployment, "Images/Win11.img").read_bytes() == image


def test_sigterm_mid_download_stops_cleanly_and_resumes(central, rescan, start_agent, deploy,
                                                       tmp_path):
    """Does SIGTERM during a download stop the agent at once (exit 0, the deployment left
    downloading, the partial kept), and the next start resume it?"""
    image, deployment, partial, agent = stopped_mid_download(central, rescan, start_agent,
                                                             deploy, tmp_path)
    assert "partial downloads kept" in agent.log
    assert partial.exists() and fresh(deployment.id).state == "downloading"
    again = start_agent("--once")
    assert again.wait(60) == 0, again.log
    assert "Images/Win11.img: resuming at byte" in again.log
    assert fresh(deployment.id).state == "succeeded"


def test_agent_enrolls_again_when_its_token_is_refused(central, start_agent, app):
    """When the server no longer knows the device token (an admin reset it), does a running
    agent enroll again with its enrollment token: a claim on its device (it holds no valid
    token), which, once an admin approves it, goes on as the same device?"""
    from portal.services import claims
    from portal.services.actors import Actor

    agent = start_agent()
    device = wait_for(lambda: device_named("pc-a1"), timeout=60, message="the enrollment")
    device_id, old_hash = device.id, device.token_hash
    device.token_hash = None
    db.session.commit()
    [claim] = wait_for(lambda: claims.list_claims(device_id), timeout=60, message="a claim")
    assert "enrolling again" in agent.log
    claims.approve(Actor(None, via="cli"), claim)
    db.session.expire_all()
    assert db.session.get(Device, device_id).token_hash not in (None, old_hash)
    assert db.session.scalar(select(db.func.count(Device.id))) == 1
    agent.signal(signal.SIGTERM)
    assert agent.wait(60) == 0


def test_deployment_under_gunicorn(central, rescan, central_node, live_server, agent_zipapp,
                                   enroll_secret, deploy, tmp_path):
    """Under the production server (gunicorn, gthread), does an agent enroll, download a central
    file through a signed link (to central's node, named to gunicorn before it starts) with a
    resumed Range request, and succeed?"""
    image = os.urandom(256 * KiB)
    write_file(central.root, "Images/Win11.img", image)
    rescan(central)
    digest = hashlib.sha256(image).hexdigest()

    def run(*extra):
        args = ["--server", live_server, "--target", str(tmp_path / "g1"), "--interval", "1",
                "--hostname", "pc-g1", "--serial", "SN-g1", "--mac", "52:54:00:00:01:01",
                "--enroll-token", enroll_secret, "--once", *extra]
        env = dict(os.environ)
        agent = AgentProcess([sys.executable, "-I", "-S", agent_zipapp], args,
                             tmp_path / "agent-g1.log", env)
        try:
            assert agent.wait(60) == 0, agent.log
            return agent.log
        finally:
            agent.close()

    run()
    deployment = deploy(device_named("pc-g1").id, central, "Images/Win11.img")
    partial = tmp_path / "g1" / ".partial" / digest
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(image[:100_000])  # what an earlier run, killed mid-download, left
    log = run()
    assert fresh(deployment.id).state == "succeeded", log
    assert "resuming at byte 100000 of 262144" in log
    assert staged(tmp_path, deployment, "Images/Win11.img", name="g1").read_bytes() == image


def test_dropped_connection_resumes_from_the_dp_node(central, rescan, seattle, admin, work,
                                                     start_agent, deploy, node, tmp_path):
    """When the DP node's connection drops mid-file, does the agent try again with a Range
    request for the rest (not the whole file) and succeed?"""
    image = os.urandom(300 * KiB)
    image_at_seattle(image, central, rescan, seattle, admin, work)
    ranges = []
    inner = node.app.wsgi_app

    def dropping_first(environ, start_response):
        if environ["PATH_INFO"] != "/dp/v1/download":
            return inner(environ, start_response)
        ranges.append(environ.get("HTTP_RANGE"))
        body = inner(environ, start_response)
        if len(ranges) > 1:
            return body

        def first_100k():  # the whole Content-Length promised, 100 KiB sent, then hang up
            sent = 0
            try:
                for piece in body:
                    yield piece[:100 * KiB - sent]
                    sent += len(piece)
                    if sent >= 100 * KiB:
                        return
            finally:
                getattr(body, "close", lambda: None)()
        return first_100k()

    node.app.wsgi_app = dropping_first
    device = enrolled(start_agent)
    deployment = deploy(device.id, seattle, "Images/Win11.img")
    agent = start_agent("--once")
    assert agent.wait(60) == 0, agent.log
    assert fresh(deployment.id).state == "succeeded", agent.log
    assert ranges == [None, f"bytes={100 * KiB}-"]
    assert "connection ended at byte 102400" in agent.log
    assert staged(tmp_path, deployment, "Images/Win11.img").read_bytes() == image


def test_progress_bar_on_a_terminal(central, rescan, server, agent_zipapp, enroll_secret, deploy,
                                    tmp_path):
    """On a terminal, does the agent draw a progress bar (percent, bytes, file) on stderr, and
    clear it before its log lines?"""
    import pty
    import select

    write_file(central.root, "Images/Win11.img", os.urandom(400 * KiB))
    rescan(central)
    args = [sys.executable, "-I", "-S", agent_zipapp, "--server", server, "--target",
            str(tmp_path / "t1"), "--interval", "1", "--hostname", "pc-t1", "--serial", "SN-t1",
            "--mac", "52:54:00:00:02:01", "--enroll-token", enroll_secret, "--once"]
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    deployment = deploy(device_named("pc-t1").id, central, "Images/Win11.img")
    master, slave = pty.openpty()
    proc = subprocess.Popen([*args, "--max-rate", str(800 * KiB)], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    output, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:  # until the agent exits and the terminal says so (EIO)
        if not select.select([master], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(60) == 0, output.decode(errors="replace")
    text = output.decode(errors="replace")
    assert fresh(deployment.id).state == "succeeded", text
    assert "\r\x1b[K[#" in text and "% " in text and "KiB/400.0 KiB" in text
    assert "Images/Win11.img" in text.split("\r\x1b[K[")[-1]


def test_forgetting_the_device_mid_download_stops_the_agent(central, rescan, start_agent, deploy,
                                                            tmp_path, admin):
    """When an admin forgets a device while its agent downloads (the server cancels the
    deployment and the token stops working), does the agent stop within seconds and remove its
    partial file, rather than download the whole image for nobody?"""
    write_file(central.root, "Images/Big.img", os.urandom(2048 * KiB))
    rescan(central)
    device = enrolled(start_agent)
    deployment = deploy(device.id, central, "Images/Big.img")
    agent = start_agent("--max-rate", str(128 * KiB))
    wait_for(lambda: fresh(deployment.id).bytes_done > 0, timeout=60,
             message="the agent to report bytes")
    devices.forget_device(admin, db.session.get(Device, device.id))
    wait_for(lambda: "ended at the server" in agent.log, timeout=60,
             message="the agent to stop the download")
    assert fresh(deployment.id).state == "cancelled"
    assert not list((tmp_path / "a1" / ".partial").iterdir())
    assert not staged(tmp_path, deployment, "Images/Big.img").exists()
    agent.signal(signal.SIGTERM)
    assert agent.wait(60) == 0


def test_a_cancel_while_the_agent_is_down_removes_its_partial(central, rescan, start_agent,
                                                              deploy, tmp_path, admin):
    """An agent stopped mid-download keeps its partial to resume; when the deployment is
    cancelled meanwhile, does the next start end it cancelled and remove that partial? (The
    manifest of a cancelled deployment lists no files to name it by.)"""
    image, deployment, partial, agent = stopped_mid_download(central, rescan, start_agent,
                                                             deploy, tmp_path)
    deployments.cancel_deployment(admin, deployment.id)
    assert fresh(deployment.id).state == "downloading" and fresh(deployment.id).cancel_requested
    again = start_agent("--once")
    assert again.wait(60) == 0, again.log
    assert fresh(deployment.id).state == "cancelled"
    assert not partial.exists()


def test_a_deployment_ended_by_the_silent_sweep_leaves_no_partial(central, rescan, start_agent,
                                                                  deploy, tmp_path):
    """An agent down mid-download never hears of its deployment again once the silent sweep
    fails it; does its next start, finding no work, remove the partial download left behind?"""
    image, deployment, partial, agent = stopped_mid_download(central, rescan, start_agent,
                                                             deploy, tmp_path)
    agent_deployments.fail_silent_deployments(silent_after=0)
    assert fresh(deployment.id).state == "failed"
    again = start_agent("--once")
    assert again.wait(60) == 0, again.log
    assert not partial.exists()
    assert "removed 1 partial download(s)" in again.log
