"""Settings > Enrollment: tokens (create, list, revoke), the client installer (its config, the
agent zipapp, the README), and `flask enrollment-token create`."""
import io
import json
import os
import subprocess
import zipfile

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Device, EnrollmentToken
from portal.services import device_groups, devices, enrollment
from portal.services.actors import Actor

PAGE = "/settings/enrollment"
SYSTEM_PYTHON = "/usr/bin/python3"  # no Flask there: proves the agent needs only the stdlib


def html_of(response) -> str:
    return response.get_data(as_text=True)


def test_enrollment_page_and_fragment(login_as):
    """Is Settings > Enrollment a tab for admins, a full page with the command, and a fragment for htmx?"""
    console = login_as("admin")
    page = console.get(PAGE)
    html = html_of(page)
    assert page.status_code == 200 and html.startswith("<!doctype html>")
    assert f'href="{PAGE}"' in html and ">Enrollment</a>" in html
    assert "python3 depot-agent.pyz --config depot-agent.json --target &lt;folder&gt;" in html
    assert "py depot-agent.pyz --config depot-agent.json --target C:\\Deploy" in html
    assert 'name="days"' in html and 'name="group_id"' in html and "No enrollment tokens yet." in html
    fragment = console.get(PAGE, hx=True)
    assert html_of(fragment).lstrip().startswith('<section id="enrollment">')
    assert "HX-Request" in fragment.headers["Vary"] and "HX-Request" in page.headers["Vary"]


def test_create_list_and_revoke(login_as):
    """Can an admin create a token (shown with its installer link), see it listed, and revoke it?"""
    group = device_groups.create_group(Actor(None), "Remote workers")
    console = login_as("admin")
    created = console.post(PAGE, {"name": "Laptops", "days": "30", "group_id": group.id})
    token = db.session.query(EnrollmentToken).one()
    assert created.status_code == 303 and created.headers["Location"] == f"{PAGE}?created={token.id}"
    html = html_of(console.get(created.headers["Location"]))
    secret = enrollment.token_secret(token)
    assert f'<code id="new-enroll-token">{secret}</code>' in html
    assert f'href="{PAGE}/{token.id}/installer"' in html and "Download client installer" in html
    assert f"--enroll-token {secret}" in html
    listed = html_of(console.get(PAGE))
    row = listed[listed.index(f'id="enrollment-token-{token.id}"'):]
    assert "Laptops" in row and token.prefix in row and "Remote workers" in row and ">valid<" in row
    assert secret not in listed  # the token itself only right after creating it
    htmx = console.post(PAGE, {"name": "Desktops", "days": "7", "group_id": ""}, hx=True)
    assert htmx.status_code == 200 and 'id="new-enroll-token"' in html_of(htmx)
    revoked = console.post(f"{PAGE}/{token.id}/revoke", hx=True)
    assert revoked.status_code == 200
    db.session.expire_all()
    assert token.state == "revoked"
    gone = console.get(f"{PAGE}/{token.id}/installer")
    assert gone.status_code == 409 and "is revoked; create a new one" in html_of(gone)


@pytest.mark.parametrize("form, message", [
    ({"name": "", "days": "7"}, "token name must not be empty"),
    ({"name": "x", "days": "0"}, "between 1 and 365 days"),
    ({"name": "x", "days": "soon"}, "whole number of days"),
])
def test_bad_input_creates_nothing(login_as, form, message):
    """Is a token with no name or a bad validity refused with a message, creating nothing?"""
    console = login_as("admin")
    response = console.post(PAGE, form, hx=True)
    assert response.status_code == 400 and message in html_of(response)
    assert db.session.query(EnrollmentToken).count() == 0


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_only_admins_manage_enrollment(login_as, admin, role):
    """Are technicians and viewers kept out of enrollment: no tab, 403 on the page, create, revoke
    and installer?"""
    token, _ = enrollment.create_enrollment_token(admin, "t")
    console = login_as(role)
    assert f'href="{PAGE}"' not in html_of(console.get("/settings/tokens"))
    responses = [console.get(PAGE), console.post(PAGE, {"name": "mine", "days": "7"}),
                 console.post(f"{PAGE}/{token.id}/revoke"), console.get(f"{PAGE}/{token.id}/installer")]
    assert [r.status_code for r in responses] == [403] * 4
    db.session.expire_all()
    assert db.session.query(EnrollmentToken).count() == 1 and token.state == "valid"


def _installer(console, token_id):
    response = console.get(f"{PAGE}/{token_id}/installer")
    assert response.status_code == 200, html_of(response)
    return response, zipfile.ZipFile(io.BytesIO(response.get_data()))


def test_installer_holds_the_config_the_agent_and_a_readme(app, login_as, admin):
    """Does the installer hold depot-agent.json {server, enroll_token}, the agent as a zipapp and a
    README with the one command; is the server DEPOT_PUBLIC_URL when set, and the download audited?"""
    token, secret = enrollment.create_enrollment_token(admin, "Seattle laptops")
    console = login_as("admin")
    response, archive = _installer(console, token.id)
    assert response.mimetype == "application/zip"
    assert 'filename=depot-agent-seattle-laptops.zip' in response.headers["Content-Disposition"]
    assert sorted(archive.namelist()) == ["README.txt", "depot-agent.json", "depot-agent.pyz"]
    assert json.loads(archive.read("depot-agent.json")) == {"server": "http://localhost",
                                                            "enroll_token": secret}
    readme = archive.read("README.txt").decode()
    assert "python3 depot-agent.pyz --config depot-agent.json --target <folder>" in readme
    assert "py depot-agent.pyz --config depot-agent.json --target C:\\Deploy" in readme
    assert "\r\n" in readme and "\n" not in readme.replace("\r\n", "")
    pyz = zipfile.ZipFile(io.BytesIO(archive.read("depot-agent.pyz")))
    names = pyz.namelist()
    assert "__main__.py" in names and "depot_agent/__init__.py" in names
    assert pyz.read("__main__.py").decode() == "from depot_agent import main\n\nmain()\n"
    assert not [n for n in names if "__pycache__" in n or not n.endswith(".py")]
    assert archive.read("depot-agent.pyz").startswith(b"#!/usr/bin/env python3\n")
    app.config["DEPOT_PUBLIC_URL"] = "https://depot.example.com/"
    _, archive = _installer(console, token.id)
    assert json.loads(archive.read("depot-agent.json"))["server"] == "https://depot.example.com"
    audited = db.session.query(AuditEvent).filter_by(action="enrollment_token.installer").count()
    assert audited == 2


def _unpack(console, token_id, folder):
    _, archive = _installer(console, token_id)
    archive.extractall(folder)
    return folder


def _python():
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} is missing (Debian's python3 package)")
    return SYSTEM_PYTHON


@pytest.mark.slow
def test_installed_agent_runs_help(login_as, admin, tmp_path):
    """Does `python3 depot-agent.pyz --help` run from the unzipped installer, with no Flask around?"""
    token, _ = enrollment.create_enrollment_token(admin, "t")
    folder = _unpack(login_as("admin"), token.id, tmp_path / "installer")
    done = subprocess.run([_python(), "-I", "depot-agent.pyz", "--help"], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout and "--target" in done.stdout


@pytest.mark.slow
def test_installed_agent_enrolls_with_its_config(login_as, admin, live_server, tmp_path):
    """Does the one command of the README enroll the endpoint with a real server, into the token's
    group, and exit when there is no work (--once)?"""
    group = device_groups.create_group(admin, "Remote workers")
    token, _ = enrollment.create_enrollment_token(admin, "Remote", 7, group.id)
    folder = _unpack(login_as("admin"), token.id, tmp_path / "installer")
    config = json.loads((folder / "depot-agent.json").read_text())
    config["server"] = live_server  # the test client's host is not where gunicorn listens
    (folder / "depot-agent.json").write_text(json.dumps(config))
    command = enrollment.agent_command(str(tmp_path / "target")).split()
    done = subprocess.run([_python(), "-I", *command[1:], "--once", "--hostname", "HOME-LT-7",
                           "--serial", "SER7", "--mac", "aa:bb:cc:dd:ee:07"],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    db.session.expire_all()
    device = db.session.query(Device).one()
    assert (device.name, device.serial, device.group_id) == ("HOME-LT-7", "SER7", group.id)
    assert devices.device_status(device) == "online"


def test_cli_creates_a_token_and_prints_the_command(app, runner):
    """Does `flask enrollment-token create` print the token and the agent command, into a group?"""
    group = device_groups.create_group(Actor(None), "SLC office")
    result = runner.invoke(args=["enrollment-token", "create", "--name", "SLC", "--days", "3",
                                 "--group", "slc office"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("det_") and "\n" not in secret
    assert f"python -m portal.agent --server http://<this-server>:8080 --enroll-token {secret} " \
           "--target <folder>" in result.output
    assert "devices join SLC office" in result.output
    token = db.session.query(EnrollmentToken).one()
    assert token.group_id == group.id and enrollment.find_valid_token(secret).id == token.id
    app.config["DEPOT_PUBLIC_URL"] = "https://depot.example.com"
    result = runner.invoke(args=["enrollment-token", "create", "--name", "Other"])
    assert "--server https://depot.example.com --enroll-token" in result.output
    for args, message in [(["--name", "x", "--group", "Nowhere"], "no group Nowhere"),
                          (["--name", "x", "--days", "400"], "between 1 and 365")]:
        result = runner.invoke(args=["enrollment-token", "create", *args])
        assert result.exit_code == 1 and message in result.output
    assert db.session.query(EnrollmentToken).count() == 2
