"""Flask commands: init (central DP, first admin), users reset-password, tokens, demo seed, jobs
recover; make run (console, central's DP node, worker, scheduler)."""
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from sqlalchemy import func, select

from portal.config import BASE_DIR
from portal.core import signing
from portal.extensions import db
from portal.launcher import descendants
from portal.models import Asset, AuditEvent, Job, User
from portal.services.demo import DEMO_FILES
from tests.factories import PASSWORD, make_user, write_file
from tests.helpers import csrf_from, poll
from tests.processes import is_gone
from tests.servers import log_text, wait_answering


def test_init_creates_the_first_admin_once_with_a_printed_password(app, runner):
    """Without DEPOT_ADMIN_PASSWORD, is a password generated, printed once, and working?"""
    result = runner.invoke(args=["init"])
    assert result.exit_code == 0, result.output
    password = result.output.split("Password (shown once, change it in Settings): ")[1].split()[0]
    user = db.session.scalars(select(User)).one()
    assert user.role == "admin" and user.email == "admin@depot.local"
    from portal.services.accounts import authenticate
    assert authenticate("admin@depot.local", password).id == user.id
    again = runner.invoke(args=["init"])
    assert again.exit_code == 0 and "Password" not in again.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_init_takes_the_admin_from_the_environment(app, runner):
    """Does `init` take the first admin's email and password from the environment, never
    printing the password?"""
    app.config.update(DEPOT_ADMIN_EMAIL="it@example.com", DEPOT_ADMIN_PASSWORD="env sparrow tulip 9")
    result = runner.invoke(args=["init"])
    assert "First admin created: it@example.com (password from DEPOT_ADMIN_PASSWORD)" in result.output
    assert "env sparrow tulip 9" not in result.output


def test_init_refuses_a_configured_root_that_does_not_exist(app, runner, tmp_path):
    """Is a configured content root that is missing a clear message at start-up, not created?"""
    missing = tmp_path / "not-mounted"
    app.config.update(DEPOT_CENTRAL_ROOT=str(missing), DEPOT_CENTRAL_ROOT_IS_DEFAULT=False)
    result = runner.invoke(args=["init"])
    assert result.exit_code == 1
    assert f"error: content root {missing} does not exist" in result.output
    assert not missing.exists()


def test_init_refuses_a_root_that_is_a_file(app, runner, tmp_path):
    """Is a configured content root that is a file a clear error at start-up?"""
    afile = tmp_path / "afile"
    afile.write_text("x")
    app.config.update(DEPOT_CENTRAL_ROOT=str(afile), DEPOT_CENTRAL_ROOT_IS_DEFAULT=False)
    result = runner.invoke(args=["init"])
    assert result.exit_code == 1 and "is not a folder" in result.output


def test_init_refuses_a_root_it_cannot_write(app, runner, tmp_path):
    """Is a root this process cannot write a clear message at start-up?"""
    root = tmp_path / "readonly-root"
    root.mkdir()
    # Root ignores mode bits, so as root the folder is made immutable instead.
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(root)], capture_output=True).returncode:
            pytest.skip("running as root on a file system without chattr +i")
        undo = ["chattr", "-i", str(root)]
    else:
        os.chmod(root, 0o555)
        undo = ["chmod", "755", str(root)]
    try:
        app.config.update(DEPOT_CENTRAL_ROOT=str(root), DEPOT_CENTRAL_ROOT_IS_DEFAULT=False)
        result = runner.invoke(args=["init"])
    finally:
        subprocess.run(undo, check=True)
    assert result.exit_code == 1
    assert f"error: content root {root} is not writable by this user" in result.output
    assert os.listdir(root) == []


def test_tokens_create_prints_a_working_token(app, runner, client):
    """Does `tokens create` print a token the API takes, and refuse an unknown email?"""
    user = make_user("technician")
    result = runner.invoke(args=["tokens", "create", "--email", user.email, "--name", "ci"])
    token = result.output.strip()
    assert token.startswith("dpt_")
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    bad = runner.invoke(args=["tokens", "create", "--email", "nobody@example.com", "--name", "ci"])
    assert bad.exit_code != 0 and "no user nobody@example.com" in bad.output


def test_demo_seed_fills_every_library_and_rescans(app, runner, central, work):
    """Does `demo seed` write a few MB into every library and queue a rescan that finds it?"""
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert f"demo content: {len(DEMO_FILES)} files written" in result.output
    work()
    libraries = set(db.session.scalars(select(Asset.library).where(Asset.dp_id == central.id)))
    assert len(libraries) == 6
    total = sum(os.path.getsize(os.path.join(central.root, rel)) for rel in DEMO_FILES)
    assert 5 * 1024 * 1024 < total < 50 * 1024 * 1024
    again = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert "0 files written" in again.output


def test_demo_seed_creates_the_three_groups_once(app, runner, central, seattle):
    """Does `demo seed` create SLC office (central), Seattle office (the DP node, then central)
    and Remote workers, and leave them alone when run again?"""
    from portal.models import DeviceGroup

    result = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert result.exit_code == 0, result.output
    groups = {g.name: g for g in db.session.scalars(select(DeviceGroup))}
    assert set(groups) == {"SLC office", "Seattle office", "Remote workers"}
    assert groups["SLC office"].preferred_dp_id == central.id
    assert groups["Seattle office"].preferred_dp_id == seattle.id
    assert groups["Seattle office"].fallback_dp_ids == [central.id]
    assert "group Seattle office: preferred DP Seattle" in result.output
    again = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert again.exit_code == 0 and "group " not in again.output
    assert db.session.scalar(select(db.func.count()).select_from(DeviceGroup)) == 3


def test_jobs_recover_requeues_a_job_redis_lost(app, runner, central):
    """Does `jobs recover` requeue a queued job that Redis no longer holds, and say so?"""
    from portal.extensions import get_redis
    from portal.services import distribution_points as dps
    from portal.services.actors import Actor

    job, _ = dps.request_rescan(central, Actor(make_user("admin"), via="console"))
    get_redis().flushdb()
    db.session.query(Job).filter_by(id=job.id).update({"queued_at": job.queued_at.replace(year=2000)})
    db.session.commit()
    result = runner.invoke(args=["jobs", "recover"])
    assert f"{job.id}: requeued" in result.output and "1 job(s) recovered" in result.output


@pytest.mark.slow
def test_make_run_serves_and_ctrl_c_stops_everything(app, worker_env, tmp_path):
    """Does the launcher behind `make run` serve the console, run a worker, the watcher and
    central's DP node (a signed link of central's downloads, whole and a Range of it), and stop
    all on Ctrl-C?"""
    env = dict(worker_env, PORT="0", DEPOT_ADMIN_EMAIL="boss@example.com",
               DEPOT_ADMIN_PASSWORD="launcher walrus pretzel", DEPOT_CENTRAL_DP_BIND="127.0.0.1:0",
               DEPOT_CENTRAL_DP_URL="http://127.0.0.1:1")  # port 0: the URL must be given
    del env["DEPOT_CENTRAL_DP_KEY"]  # generated into the instance folder, for both to read
    write_file(worker_env["DEPOT_CENTRAL_ROOT"], "Images/run.wim", b"r" * 5000)
    log_path = tmp_path / "launcher.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "portal.launcher"], env=env, cwd=str(BASE_DIR),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        ports = poll(lambda: listening(log_path, proc), timeout=90,
                     message="the console and central's node to listen")
        port, node_port = ports["0.0.0.0"], ports["127.0.0.1"]
        wait_answering(f"http://127.0.0.1:{port}/login", proc, log_path)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=30).read().decode()
        assert "Sign in to the console" in page
        assert db.session.scalars(select(User).where(User.email == "boss@example.com")).one()
        key = (tmp_path / "instance" / "central_dp_key").read_text().strip()  # kept for the node
        link = signing.sign(signing.DP_NODE, f"http://127.0.0.1:{node_port}", key,
                            "Images/run.wim", 60)
        wait_answering(link, proc, log_path)
        assert urllib.request.urlopen(link, timeout=30).read() == b"r" * 5000
        ranged = urllib.request.Request(link, headers={"Range": "bytes=4990-"})
        assert urllib.request.urlopen(ranged, timeout=30).read() == b"r" * 10
        # The watcher says so once it watches (on a busy machine, after the rest answers).
        poll(lambda: "Watching " in log_path.read_text(), timeout=90,
             message="the watcher of central's root to start")
        children = descendants(proc.pid)
        # gunicorn, central's node, rq worker, rq cron, the watcher of central's root (and theirs)
        assert len(children) >= 5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        poll(lambda: all(is_gone(pid) for pid in children), timeout=30,
             message="every child of the launcher to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = log_path.read_text()
    assert "Depot is running" in output and "DP node serving" in output
    assert "Watching " in output and "exited with status" not in output


def listening(log_path, proc) -> dict[str, int] | None:
    """{host: port} of both gunicorns the launcher started (console on 0.0.0.0, central's node
    on 127.0.0.1), once both say so; fails with the log if the launcher exited."""
    text = log_text(log_path)
    if proc.poll() is not None:
        raise AssertionError(f"the launcher exited while starting:\n{text[-3000:]}")
    found = dict(re.findall(r"Listening at: http://([\d.]+):(\d+)", text))
    return {host: int(port) for host, port in found.items()} if len(found) == 2 else None


@pytest.mark.parametrize("setting, value, says", [
    ("DEPOT_CENTRAL_DP_BIND", "8081", "DEPOT_CENTRAL_DP_BIND must be HOST:PORT"),
    ("DEPOT_CENTRAL_DP_BIND", "0.0.0.0:70000", "DEPOT_CENTRAL_DP_BIND must be HOST:PORT"),
    ("DEPOT_CENTRAL_DP_URL", "ftp://depot.example", "DEPOT_CENTRAL_DP_URL must be the http"),
    ("DEPOT_CENTRAL_DP_KEY", "short", "DEPOT_CENTRAL_DP_KEY must be at least 16"),
    ("DEPOT_CENTRAL_DP_WORKERS", 0, "DEPOT_CENTRAL_DP_WORKERS must be 1 or more"),
])
def test_bad_central_node_settings_stop_make_run_and_the_node(app, runner, monkeypatch, tmp_path,
                                                              capsys, setting, value, says):
    """Does a central node setting that will not do stop `make run` before it starts anything,
    and `flask dp-node central`, each with a message naming the setting?"""
    from portal import launcher
    from portal.config import Config

    monkeypatch.setattr(Config, "INSTANCE_DIR", str(tmp_path / "instance"))
    monkeypatch.setattr(Config, setting, value)
    monkeypatch.setattr(launcher.subprocess, "Popen", None)  # nothing may be started
    monkeypatch.setattr("portal.dpnode.cli.serve", None)  # nor exec'd in place of pytest
    assert launcher.main() == 2
    assert says in capsys.readouterr().err
    app.config[setting] = value
    result = runner.invoke(args=["dp-node", "central"])
    assert result.exit_code == 1 and says in result.output, result.output


# --- users reset-password (break-glass) --------------------------------------------------------

NEW_PASSWORD = "tidal lantern moss 7"


def _browser(app, address="203.0.113.7"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _login(client, email, password):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def _password_events():
    db.session.expire_all()
    return [(e.action, e.actor, e.via, e.target, e.details) for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "user.password_reset"))]


def test_users_reset_password_asks_twice_ends_sessions_and_clears_the_lockout(app, runner):
    """Does `users reset-password EMAIL` take the password typed twice (any case of the email),
    end that person's sessions, clear their sign-in throttling, leave others alone and audit?"""
    admin, other = make_user("admin"), make_user("viewer")
    signed_in = _browser(app, "198.51.100.20")
    assert _login(signed_in, admin.email, PASSWORD).status_code == 303
    theirs = _browser(app, "198.51.100.21")
    assert _login(theirs, other.email, PASSWORD).status_code == 303
    locked = _browser(app)
    for _ in range(5):
        response = _login(locked, admin.email, "wrong password")
    assert response.status_code == 429
    result = runner.invoke(args=["users", "reset-password", admin.email.upper()],
                           input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output and NEW_PASSWORD not in result.output
    assert f"New password set for {admin.email}" in result.output
    assert signed_in.get("/").status_code == 302 and theirs.get("/").status_code == 200
    assert _login(locked, admin.email, NEW_PASSWORD).status_code == 303  # no wait any more
    assert _login(_browser(app, "192.0.2.9"), admin.email, PASSWORD).status_code == 401
    assert _password_events() == [("user.password_reset", "system", "cli", admin.email,
                                   {"sessions_ended": True, "sign_in_limits_cleared": True})]


def test_users_reset_password_reads_stdin_and_refuses_a_weak_password(app, runner):
    """Does --password-stdin take the first line, and is a password the policy refuses (or two
    that differ) refused with a message, nothing changed or audited?"""
    user = make_user("technician")
    before = db.session.get(User, user.id).password_hash
    weak = runner.invoke(args=["users", "reset-password", user.email, "--password-stdin"],
                         input="password1234\n")
    assert weak.exit_code == 1 and "the password was refused, nothing was changed" in weak.output
    assert "too easy to guess" in weak.output
    short = runner.invoke(args=["users", "reset-password", user.email], input="short\nshort\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    differ = runner.invoke(args=["users", "reset-password", user.email],
                           input=f"{NEW_PASSWORD}\nsomething else 8\n")
    assert differ.exit_code != 0 and "do not match" in differ.output
    db.session.expire_all()
    assert db.session.get(User, user.id).password_hash == before and _password_events() == []
    done = runner.invoke(args=["users", "reset-password", user.email, "--password-stdin"],
                         input=f"{NEW_PASSWORD}\n")
    assert done.exit_code == 0 and "New password set" in done.output
    assert _login(_browser(app), user.email, NEW_PASSWORD).status_code == 303


def test_users_reset_password_names_an_unknown_email_before_asking(app, runner):
    """Is an unknown email refused at once, with the email named and no password asked for;
    and does a deactivated account get told it still cannot sign in?"""
    result = runner.invoke(args=["users", "reset-password", "nobody@example.com"])
    assert result.exit_code == 1 and "New password" not in result.output
    assert "no user with the email 'nobody@example.com'" in result.output
    user = make_user("viewer")
    user.active = False
    db.session.commit()
    gone = runner.invoke(args=["users", "reset-password", user.email, "--password-stdin"],
                         input=f"{NEW_PASSWORD}\n")
    assert gone.exit_code == 0 and "is deactivated and cannot sign in" in gone.output
