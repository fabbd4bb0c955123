"""The agent API (/agent/v1/): enrollment, device tokens, rate limits, heartbeats, work,
manifests and idempotent progress reports."""
import os
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Deployment, Device, EnrollmentToken, Notification, utcnow
from portal.services import agent_deployments, enrollment
from tests.factories import AGENT_FACTS, write_file


def test_enroll_creates_device_with_its_facts(agent_calls, enroll_secret):
    """Does an agent with a valid enrollment token get a device token, a device row with its
    facts (MACs normalised), the token's use counted and an audit event?"""
    response = agent_calls.enroll(enroll_secret, mac_addresses=["52-54-00-AA-BB-01"])
    assert response.status_code == 201, response.json
    body = response.json
    assert body["device_token"].startswith("ddt_") and body["interval"] == 1
    assert body["report_interval"] == 1
    device = db.session.get(Device, body["device_id"])
    assert (device.name, device.serial, device.os) == ("pc-01", "SN-0001", "Debian 13")
    assert device.mac_addresses == ["52:54:00:aa:bb:01"]
    assert device.ip_addresses == ["10.2.0.11"] and device.remote_ip == "127.0.0.1"
    assert device.token_hash == enrollment.hash_token(body["device_token"])
    token = db.session.scalars(select(EnrollmentToken)).one()
    assert token.uses == 1 and token.last_used_at is not None
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "device.enroll")).one()
    assert event.target == "pc-01" and event.via == "agent" and event.ip == "127.0.0.1"


def test_enroll_joins_the_tokens_group(agent_calls, admin):
    """Does a device enrolled with a group's token land in that group?"""
    from portal.models import DeviceGroup

    group = DeviceGroup(name="Seattle office")
    db.session.add(group)
    db.session.commit()
    _, secret = enrollment.create_enrollment_token(admin, "seattle", days=1, group_id=group.id)
    device_id, _ = agent_calls.enrolled(secret)
    assert db.session.get(Device, device_id).group_id == group.id


@pytest.mark.parametrize("case", ["unknown", "expired", "revoked", "missing"])
def test_enroll_refuses_bad_tokens(agent_calls, admin, case):
    """Is an unknown, expired, revoked or missing enrollment token refused with 401
    enroll_token_invalid, and no device made?"""
    token, secret = enrollment.create_enrollment_token(admin, "t", days=1)
    if case == "unknown":
        secret = "det_not-a-token"
    elif case == "expired":
        token.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    elif case == "revoked":
        enrollment.revoke_enrollment_token(admin, token.id)
    elif case == "missing":
        secret = None
    response = agent_calls.enroll(secret)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "enroll_token_invalid"
    assert db.session.scalar(select(db.func.count(Device.id))) == 0


@pytest.mark.parametrize("facts, message", [
    ({"hostname": ""}, "hostname"),
    ({"hostname": 12}, "hostname"),
    ({"mac_addresses": "52:54:00:aa:bb:01"}, "mac_addresses"),
    ({"mac_addresses": ["not-a-mac"]}, "mac_addresses"),
    ({"ip_addresses": ["10.2.0.300"]}, "ip_addresses"),
])
def test_enroll_refuses_bad_facts(agent_calls, enroll_secret, facts, message):
    """Are malformed facts refused with a 400 naming the field, and nothing enrolled?"""
    response = agent_calls.enroll(enroll_secret, **facts)
    assert response.status_code == 400 and message in response.json["error"]["message"]
    assert db.session.scalar(select(db.func.count(Device.id))) == 0


def test_enroll_again_with_the_device_token_reuses_the_device(agent_calls, enroll_secret):
    """Does an agent that shows its device token (header or body) with the same serial plus a
    shared MAC enroll the same device again, with a new token (the old one refused from then on),
    while another MAC makes a new device?"""
    first_id, first_token = agent_calls.enrolled(enroll_secret)
    response = agent_calls.client.post(
        "/agent/v1/enroll", headers={"Authorization": f"Bearer {first_token}"},
        json={"enroll_token": enroll_secret, **agent_calls.facts, "hostname": "pc-01-renamed",
              "mac_addresses": ["52:54:00:aa:bb:99", "52:54:00:aa:bb:01"]})
    assert response.status_code == 201 and "claim" not in response.json
    again_id, again_token = response.json["device_id"], response.json["device_token"]
    assert again_id == first_id and again_token != first_token
    assert db.session.get(Device, first_id).name == "pc-01-renamed"
    assert agent_calls.call("GET", "/work", first_token).status_code == 401
    assert agent_calls.call("GET", "/work", again_token).status_code == 200
    third_id, third_token = agent_calls.enrolled(enroll_secret, device_token=again_token)
    assert third_id == first_id
    assert agent_calls.call("GET", "/work", again_token).status_code == 401
    other_id, _ = agent_calls.enrolled(enroll_secret, mac_addresses=["52:54:00:cc:cc:cc"])
    assert other_id != first_id
    assert db.session.scalar(select(EnrollmentToken.uses)) == 4
    assert db.session.scalar(select(db.func.count(AuditEvent.id)).where(
        AuditEvent.action == "device.claim")) == 0


def test_enroll_again_without_the_device_token_is_only_a_claim(agent_calls, enroll_secret):
    """Does the same serial plus a shared MAC without the device token (or with a wrong one)
    make a pending claim: a record of its own, the known device and its token untouched?"""
    first_id, first_token = agent_calls.enrolled(enroll_secret)
    response = agent_calls.enroll(enroll_secret, hostname="attacker",
                                  mac_addresses=["52:54:00:aa:bb:01"], device_token="ddt_wrong")
    assert response.status_code == 201 and response.json["claim"] == "pending"
    claim_id = response.json["device_id"]
    assert claim_id != first_id
    device = db.session.get(Device, first_id)
    assert device.name == "pc-01" and device.token_hash == enrollment.hash_token(first_token)
    assert db.session.get(Device, claim_id).claims_device_id == first_id
    assert agent_calls.call("GET", "/work", first_token).status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ddt_wrong", "Basic abc"])
def test_calls_without_a_valid_device_token_get_401(client, header):
    """Is every device call without a valid device token refused with 401 JSON?"""
    headers = {"Authorization": header} if header else {}
    for method, path in [("GET", "/agent/v1/work"), ("POST", "/agent/v1/heartbeat"),
                         ("GET", "/agent/v1/deployments/1"),
                         ("POST", "/agent/v1/deployments/1/progress")]:
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 401, path
        assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("config_overrides", [{"DEPOT_AGENT_RATE_LIMIT": 3}])
def test_device_calls_are_rate_limited(agent_calls, enroll_secret, config_overrides):
    """Does a device over DEPOT_AGENT_RATE_LIMIT calls a minute get 429 with Retry-After, while
    another device still gets through?"""
    _, token = agent_calls.enrolled(enroll_secret)
    _, other = agent_calls.enrolled(enroll_secret, serial="SN-0002")
    for _ in range(3):
        assert agent_calls.call("GET", "/work", token).status_code == 200
    limited = agent_calls.call("GET", "/work", token)
    assert limited.status_code == 429 and limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert agent_calls.call("GET", "/work", other).status_code == 200


@pytest.mark.parametrize("failure", [ConnectionError("refused"),
                                     ValueError("I/O operation on closed file")])
def test_rate_limit_fails_open_when_redis_fails(agent_calls, enroll_secret, app, monkeypatch,
                                                failure):
    """When Redis cannot count (down, or redis-py failing a fresh connection with ValueError, as
    the agents bench saw), do calls go through rather than turning into 500s?"""
    from portal.blueprints.agent_api import limits

    _, token = agent_calls.enrolled(enroll_secret)

    class Broken:
        def pipeline(self):
            raise failure

    monkeypatch.setattr(limits, "get_redis", lambda: Broken())
    assert agent_calls.call("GET", "/work", token).status_code == 200


@pytest.mark.parametrize("config_overrides", [{"DEPOT_ENROLL_RATE_LIMIT": 2}])
def test_enrollment_is_rate_limited_per_address(agent_calls, enroll_secret, config_overrides):
    """Is a third enrollment in a minute from one address refused with 429, even with a bad
    token (guessing tokens costs the same)?"""
    assert agent_calls.enroll("det_guess").status_code == 401
    assert agent_calls.enroll(enroll_secret).status_code == 201
    limited = agent_calls.enroll(enroll_secret)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert db.session.scalar(select(db.func.count(Device.id))) == 1


def test_heartbeat_updates_facts_and_last_seen(agent_calls, enroll_secret):
    """Does a heartbeat record changed facts, free space and last_seen_at, and leave facts it
    did not send alone?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    db.session.get(Device, device_id).last_seen_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    response = agent_calls.call("POST", "/heartbeat", token, json={
        "hostname": "  pc-01b\x07 ", "ip_addresses": ["10.2.0.12", "fe80::1"],
        "free_bytes": 123456789, "agent_version": "0.2.0"})
    assert response.status_code == 200 and response.json == {"interval": 1, "report_interval": 1}
    device = db.session.get(Device, device_id)
    assert device.name == "pc-01b" and device.ip_addresses == ["10.2.0.12", "fe80::1"]
    assert device.free_bytes == 123456789 and device.agent_version == "0.2.0"
    assert device.serial == "SN-0001" and device.os == "Debian 13"
    assert utcnow() - device.last_seen_at < timedelta(minutes=1)


SPOOFS = ["SEA-LT-042\u202egnp.exe", "\u2066SEA-LT-042\u2069", "SEA\u200e-LT-042\u200f",
          "SEA-LT\u0085-042\u009b", "SEA-LT-042\u200b\u2028"]


@pytest.mark.parametrize("hostname", SPOOFS)
def test_invisible_characters_never_reach_a_devices_name(agent_calls, enroll_secret, hostname,
                                                         caplog):
    """Are bidirectional overrides, isolates, marks, C1 controls and zero-width characters taken
    out of a hostname at enrollment and heartbeat (an admin's rename with them is refused), and
    out of the other text facts; and is a hostname of nothing else refused?"""
    response = agent_calls.enroll(enroll_secret, hostname=hostname, serial="SN\u202e-0001",
                                  os="Windows\u2067 11")
    assert response.status_code == 201, response.json
    device = db.session.get(Device, response.json["device_id"])
    clean = "SEA-LT-042gnp.exe" if "gnp" in hostname else "SEA-LT-042"
    assert (device.name, device.hostname) == (clean, clean)
    assert (device.serial, device.os) == ("SN-0001", "Windows 11")
    assert "kept as" in caplog.text
    token = response.json["device_token"]
    beat = agent_calls.call("POST", "/heartbeat", token, json={"hostname": "PC\u202e-9"})
    assert beat.status_code == 200
    db.session.expire_all()
    assert db.session.get(Device, device.id).name == "PC-9"
    nothing = agent_calls.call("POST", "/heartbeat", token, json={"hostname": "\u202e\u200f "})
    assert nothing.status_code == 400 and "hostname" in nothing.json["error"]["message"]
    db.session.expire_all()
    assert db.session.get(Device, device.id).name == "PC-9"


def test_bad_heartbeat_changes_nothing(agent_calls, enroll_secret):
    """Is a heartbeat with a malformed fact refused (400) without touching the device?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    response = agent_calls.call("POST", "/heartbeat", token,
                                json={"hostname": "new", "free_bytes": -1})
    assert response.status_code == 400 and "free_bytes" in response.json["error"]["message"]
    assert db.session.get(Device, device_id).name == "pc-01"
    assert agent_calls.call("POST", "/heartbeat", token, json=[1]).status_code == 400


@pytest.fixture
def image(central, rescan):
    """Images/Win11.wim (1000 bytes) and Platform Packs/Dell (two files) at central, scanned."""
    write_file(central.root, "Images/Win11.wim", b"w" * 1000)
    write_file(central.root, "Platform Packs/Dell/a.inf", b"driver a")
    write_file(central.root, "Platform Packs/Dell/sub/b.inf", b"driver b")
    rescan(central)
    return "Images/Win11.wim"


def test_work_lists_only_unfinished_deployments(agent_calls, enroll_secret, central, image,
                                                deploy):
    """Does /work list the device's unfinished deployments, and none once it finished?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    work = agent_calls.call("GET", "/work", token).json
    assert work == {"deployments": [{"id": deployment.id, "state": "pending",
                                     "cancel_requested": False}], "interval": 1}
    deployment.state = "succeeded"
    db.session.commit()
    assert agent_calls.call("GET", "/work", token).json["deployments"] == []


def test_manifest_gives_files_and_links_that_download(agent_calls, enroll_secret, central,
                                                      image, deploy, central_node):
    """Does the manifest list every pinned file with size, SHA-256 and a link to central's DP
    node that serves it (whole, and a Range of it), and does the node refuse the link once its
    signature, path or expiry is changed?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image, "Platform Packs/Dell")
    manifest = agent_calls.call("GET", f"/deployments/{deployment.id}", token).json
    assert manifest["dp"] == {"id": central.id, "name": "Central"}
    assert manifest["bytes_total"] == 1016 and manifest["image"] == image
    paths = [f["path"] for f in manifest["files"]]
    assert paths == ["Images/Win11.wim", "Platform Packs/Dell/a.inf",
                     "Platform Packs/Dell/sub/b.inf"]
    url = manifest["files"][0]["url"]
    assert url.startswith(f"{central_node.url}/dp/v1/download?path=Images%2FWin11.wim&")
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and whole.content == b"w" * 1000
    part = requests.get(url, headers={"Range": "bytes=990-"}, timeout=30)
    assert part.status_code == 206 and part.content == b"w" * 10
    assert part.headers["Content-Range"] == "bytes 990-999/1000"
    query = parse_qs(urlsplit(url).query)
    for changed in ({"sig": "0" * 64}, {"path": "Platform Packs/Dell/a.inf"},
                    {"expires": str(int(query["expires"][0]) + 1)}):
        bad = requests.get(f"{central_node.url}/dp/v1/download",
                           params={k: v[0] for k, v in query.items()} | changed, timeout=30)
        assert bad.status_code == 403 and bad.json()["error"]["code"] == "link_refused", changed


def test_central_node_serves_downloads_only(app, central, image, central_node):
    """Does central's DP node, even with the key, refuse to list, upload to or delete from
    central's root (central's content is central's), while it says it is up?"""
    assert central_node.call("GET", "/health").json()["status"] == "ok"
    for method, path, body in [("GET", "/inventory", None), ("DELETE", "/content?path=" + image,
                                                              None),
                               ("POST", "/uploads", {"path": "Images/x.wim", "size": 1,
                                                     "sha256": "0" * 64})]:
        response = central_node.call(method, path, json=body)
        assert response.status_code == 403, path
        assert "only serves downloads" in response.json()["error"]["message"]
    assert os.path.isfile(os.path.join(central.root, image))
    assert central_node.call("GET", "/nothing").status_code == 404


def test_older_central_links_go_to_the_node_or_are_refused(agent_calls, enroll_secret, central,
                                                         image, deploy, client, app,
                                                         central_node):
    """Is a link to the console's /agent/v1/download (made before central's node served
    downloads) refused (403 link_refused) once expired or with its path, expiry or signature
    changed, and otherwise sent on (307) to the same file and expiry at central's node, where it
    downloads; is a signed path outside the libraries refused?"""
    from portal.core import signing

    secret = app.config["SECRET_KEY"]

    def link_signature(path, expires):
        return signing.signature(signing.CENTRAL, secret, path, expires)

    def link(path, expires, sig=None):
        return "/agent/v1/download?" + urlencode(
            {"path": path, "expires": expires, "sig": sig or link_signature(path, expires)})

    expired = link(image, int(time.time()) - 1)
    response = client.get(expired)
    assert response.status_code == 403 and response.json["error"]["code"] == "link_refused"
    assert "expired" in response.json["error"]["message"]
    later = int(time.time()) + 60
    good_sig = link_signature(image, later)
    for bad in (link("Platform Packs/Dell/a.inf", later, good_sig), link(image, later + 1, good_sig),
                link(image, later, "0" * 64), "/agent/v1/download?path=Images/Win11.wim"):
        response = client.get(bad)
        assert response.status_code == 403, bad
    moved = client.get(link(image, later))
    assert moved.status_code == 307 and b"w" * 1000 not in moved.data
    target = moved.headers["Location"]
    assert target.startswith(f"{central_node.url}/dp/v1/download?")
    assert parse_qs(urlsplit(target).query)["expires"] == [str(later)]
    assert requests.get(target, timeout=30).content == b"w" * 1000
    assert client.get(link("../secret_key", later)).status_code == 400


def test_another_devices_deployment_is_404(agent_calls, enroll_secret, central, image, deploy):
    """Does a device asking for, or reporting on, another device's deployment get 404, and
    does nothing change?"""
    owner_id, _ = agent_calls.enrolled(enroll_secret)
    _, stranger = agent_calls.enrolled(enroll_secret, serial="SN-0002")
    deployment = deploy(owner_id, central, image)
    assert agent_calls.call("GET", f"/deployments/{deployment.id}", stranger).status_code == 404
    response = agent_calls.call("POST", f"/deployments/{deployment.id}/progress", stranger,
                                json={"seq": 1, "state": "failed", "error": "x"})
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).state == "pending"


def report(agent_calls, token, deployment, **body):
    """POST one progress report about the deployment with the device token."""
    return agent_calls.call("POST", f"/deployments/{deployment.id}/progress", token, json=body)


def test_progress_reports_are_idempotent_and_move_forward(agent_calls, enroll_secret, central,
                                                          image, deploy):
    """Is a report applied once (the same seq again, or an older one, changes nothing), do
    states only move forward, and does a finished deployment never change again?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    first = report(agent_calls, token, deployment, seq=1, state="downloading", bytes_done=400,
                   phase="Images/Win11.wim")
    assert first.status_code == 200 and first.json == {"state": "downloading", "cancel": False}
    row = db.session.get(Deployment, deployment.id)
    assert (row.state, row.bytes_done, row.report_seq, row.phase) == (
        "downloading", 400, 1, "Images/Win11.wim")
    assert row.started_at is not None and row.reported_at is not None
    again = report(agent_calls, token, deployment, seq=1, state="downloading", bytes_done=900)
    older = report(agent_calls, token, deployment, seq=0 + 1, state="applying")
    assert again.json == older.json == {"state": "downloading", "cancel": False}
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).bytes_done == 400
    assert report(agent_calls, token, deployment, seq=2, state="applying").status_code == 200
    back = report(agent_calls, token, deployment, seq=3, state="downloading")
    assert back.status_code == 409 and back.json["error"]["code"] == "illegal_transition"
    done = report(agent_calls, token, deployment, seq=4, state="succeeded", bytes_done=0)
    assert done.json == {"state": "succeeded", "cancel": False}
    row = db.session.get(Deployment, deployment.id)
    db.session.refresh(row)
    assert row.bytes_done == 1000 and row.finished_at is not None and row.percent == 100
    late = report(agent_calls, token, deployment, seq=9, state="failed", error="late")
    assert late.json == {"state": "succeeded", "cancel": False}
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).error is None


@pytest.mark.parametrize("body, message", [
    ({"state": "downloading"}, "seq"),
    ({"seq": "1", "state": "downloading"}, "seq"),
    ({"seq": 1, "state": "pending"}, "state"),
    ({"seq": 1, "state": "downloading", "bytes_done": -5}, "bytes_done"),
])
def test_bad_progress_reports_are_refused(agent_calls, enroll_secret, central, image, deploy,
                                          body, message):
    """Is a malformed report refused with 400 naming the field, changing nothing?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    response = report(agent_calls, token, deployment, **body)
    assert response.status_code == 400 and message in response.json["error"]["message"]
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).report_seq == 0


def test_pending_cannot_jump_to_succeeded(agent_calls, enroll_secret, central, image, deploy):
    """Is 'succeeded' refused for a deployment that never downloaded?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    response = report(agent_calls, token, deployment, seq=1, state="succeeded")
    assert response.status_code == 409


def test_failure_report_notifies_everyone(agent_calls, enroll_secret, central, image, deploy,
                                          admin):
    """Does a failure report keep the agent's reason and notify people?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    report(agent_calls, token, deployment, seq=1, state="downloading")
    response = report(agent_calls, token, deployment, seq=2, state="failed",
                      error="hash mismatch: Images/Win11.wim at Central")
    assert response.json == {"state": "failed", "cancel": False}
    row = db.session.get(Deployment, deployment.id)
    db.session.refresh(row)
    assert row.error == "hash mismatch: Images/Win11.wim at Central"
    note = db.session.scalars(select(Notification).where(
        Notification.kind == "deployment.failed")).first()
    assert note is not None and "hash mismatch" in note.message
    assert note.deployment_id == deployment.id


def test_cancel_requested_answers_cancel(agent_calls, enroll_secret, central, image, deploy):
    """Does a report on a deployment whose cancel was asked for answer cancel: true, and does
    the agent's 'cancelled' end it; does an already cancelled one answer cancel too?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    report(agent_calls, token, deployment, seq=1, state="downloading", bytes_done=10)
    deployment.cancel_requested = True
    db.session.commit()
    assert report(agent_calls, token, deployment, seq=2, state="downloading",
                  bytes_done=20).json == {"state": "downloading", "cancel": True}
    manifest = agent_calls.call("GET", f"/deployments/{deployment.id}", token).json
    assert manifest["cancel_requested"] is True and manifest["files"] == []
    assert report(agent_calls, token, deployment, seq=3,
                  state="cancelled").json == {"state": "cancelled", "cancel": True}
    assert agent_calls.call("GET", "/work", token).json["deployments"] == []


def test_manifest_fails_a_deployment_whose_copy_changed(agent_calls, enroll_secret, central,
                                                        image, deploy, rescan):
    """When the DP's copy of a pinned asset changed after creation, does the manifest answer
    409 deployment_changed and the deployment fail with a clear reason, notified?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    write_file(central.root, image, b"v" * 1000)
    rescan(central)
    response = agent_calls.call("GET", f"/deployments/{deployment.id}", token)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "deployment_changed"
    expected = ("the copy of Images/Win11.wim at Central changed after this deployment was "
                "created; deploy again")
    assert response.json["error"]["message"] == expected
    db.session.expire_all()
    row = db.session.get(Deployment, deployment.id)
    assert row.state == "failed" and row.error == expected and row.finished_at
    assert db.session.scalar(select(db.func.count(Notification.id)).where(
        Notification.deployment_id == deployment.id)) >= 1


def test_the_sweep_ends_deployments_whose_agent_went_silent(agent_calls, enroll_secret, central,
                                                           image, deploy, app):
    """Does the sweep fail a downloading deployment whose agent went silent, end a silent one
    whose cancel was asked for as cancelled, and leave pending and recent ones alone?"""
    ids = []
    for n in range(4):
        device_id, _ = agent_calls.enrolled(enroll_secret, serial=f"SN-{n}")
        ids.append(deploy(device_id, central, image).id)
    old = utcnow() - timedelta(seconds=app.config["DEPOT_DEPLOYMENT_SILENT_AFTER"] + 60)
    rows = [db.session.get(Deployment, i) for i in ids]
    for row, state, reported, cancel in [(rows[0], "downloading", old, False),
                                         (rows[1], "applying", old, True),
                                         (rows[2], "downloading", utcnow(), False),
                                         (rows[3], "pending", None, False)]:
        row.state, row.reported_at, row.cancel_requested = state, reported, cancel
        row.created_at = old
    db.session.commit()
    outcome = agent_deployments.fail_silent_deployments()
    assert outcome == {"failed": [ids[0]], "cancelled": [ids[1]]}
    db.session.expire_all()
    states = [db.session.get(Deployment, i).state for i in ids]
    assert states == ["failed", "cancelled", "downloading", "pending"]
    assert "went silent" in db.session.get(Deployment, ids[0]).error
    assert agent_deployments.fail_silent_deployments() == {"failed": [], "cancelled": []}


def test_unchanged_heartbeat_writes_only_last_seen(agent_calls, enroll_secret, app):
    """With 5,000 agents in mind: does a heartbeat that changes no fact write only last_seen_at
    (one UPDATE of one column), and one that changes the OS write that column too? (The slow
    path, DEPOT_AGENT_LEAN=0; with it on, a quiet heartbeat writes nothing at once:
    test_agent_lean.py.)"""
    from sqlalchemy import event

    app.config["DEPOT_AGENT_LEAN"] = False
    _, token = agent_calls.enrolled(enroll_secret)
    body = {k: v for k, v in AGENT_FACTS.items()}
    agent_calls.call("POST", "/heartbeat", token, json=body)  # remote_ip etc. settle
    updates = []

    def record(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        agent_calls.call("POST", "/heartbeat", token, json=body)
        quiet = list(updates)
        updates.clear()
        agent_calls.call("POST", "/heartbeat", token, json={**body, "os": "Debian 14"})
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(quiet) == 1 and "SET last_seen_at=" in quiet[0].replace(" = ", "=")
    assert "os" in updates[0] and "last_seen_at" in updates[0] and "serial" not in updates[0]


def test_central_download_link_is_for_central_only(app, central, seattle):
    """Does only the central DP's file-system backend make /agent/v1/download links, and are
    paths outside the libraries refused?"""
    from portal.core.errors import BadPath, StorageRefused
    from portal.services.backends import open_storage
    from portal.storage.central import FilesystemStorage

    here = "http://depot.example:8080/"
    link = open_storage(central, public_url=here).download_link("Images/x.wim", 60)
    assert link.startswith("http://depot.example:8081/dp/v1/download?path=Images%2Fx.wim")
    with pytest.raises(BadPath):
        open_storage(central, public_url=here).download_link("../etc/passwd", 60)
    with pytest.raises(StorageRefused):
        FilesystemStorage(root=central.root).download_link("Images/x.wim", 60)
    with pytest.raises(StorageRefused):
        open_storage(central, public_url=here).download_link("Images/x.wim", 0)
    with pytest.raises(StorageRefused, match="DEPOT_PUBLIC_URL or DEPOT_CENTRAL_DP_URL"):
        open_storage(central).download_link("Images/x.wim", 60)  # where do endpoints reach it?
    assert "/dp/v1/download" in open_storage(seattle).download_link("Images/x.wim", 60)


@pytest.mark.parametrize("settings, starts", [
    ({"DEPOT_CENTRAL_DP_URL": "https://files.example/"}, "https://files.example/dp/v1/download?"),
    ({"DEPOT_PUBLIC_URL": "https://depot.example", "DEPOT_CENTRAL_DP_BIND": "[::]:9443"},
     "https://depot.example:9443/dp/v1/download?"),
    ({"DEPOT_PUBLIC_URL": "http://[fd00::5]:8080/"}, "http://[fd00::5]:8081/dp/v1/download?"),
])
def test_central_links_name_the_node_as_set(app, central, settings, starts):
    """Do central's links go to DEPOT_CENTRAL_DP_URL when set, else to the host of central's
    public address on the port of DEPOT_CENTRAL_DP_BIND?"""
    from portal.services.backends import open_storage

    app.config.update(settings)
    assert open_storage(central).download_link("Images/x.wim", 60).startswith(starts)


@pytest.mark.parametrize("settings, says", [
    ({"DEPOT_CENTRAL_DP_URL": "files.example:8081"}, "DEPOT_CENTRAL_DP_URL must be the http"),
    ({"DEPOT_CENTRAL_DP_URL": "http://files.example:99999"}, "DEPOT_CENTRAL_DP_URL must be"),
    ({"DEPOT_CENTRAL_DP_BIND": "8081"}, "DEPOT_CENTRAL_DP_BIND must be HOST:PORT"),
    ({"DEPOT_CENTRAL_DP_BIND": "0.0.0.0:http"}, "DEPOT_CENTRAL_DP_BIND must be HOST:PORT"),
    ({"DEPOT_CENTRAL_DP_BIND": "127.0.0.1:0"}, "set DEPOT_CENTRAL_DP_URL"),
])
def test_bad_central_node_settings_fail_the_deployment_saying_so(
        agent_calls, enroll_secret, central, image, deploy, app, settings, says):
    """Does a central node setting that will not do fail the deployment whose manifest needs a
    link, with the setting named, instead of a link nobody can follow?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    app.config.update(settings)
    agent_calls.call("GET", f"/deployments/{deployment.id}", token)
    db.session.expire_all()
    failed = db.session.get(Deployment, deployment.id)
    assert failed.state == "failed" and says in failed.error, failed.error


def test_silent_sweep_runs_as_a_scheduled_job(agent_calls, enroll_secret, central, image, deploy,
                                              work, app):
    """Is the sweep scheduled by `rq cron portal.jobs.cron`, and does its job, run by a real RQ
    worker, fail a silent deployment?"""
    from rq.cron import CronScheduler

    from portal.extensions import get_queue, get_redis

    scheduler = CronScheduler(connection=get_redis())
    scheduler.load_config_from_file("portal.jobs.cron")
    by_name = {job.func_name: job for job in scheduler._cron_jobs}
    sweep = by_name["portal.jobs.maintenance.fail_silent_deployments"]
    assert (sweep.queue_name, sweep.interval) == ("default", 60)
    device_id, _ = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    deployment.state = "downloading"
    deployment.reported_at = utcnow() - timedelta(
        seconds=app.config["DEPOT_DEPLOYMENT_SILENT_AFTER"] + 1)
    db.session.commit()
    get_queue("default").enqueue("portal.jobs.maintenance.fail_silent_deployments")
    work()
    assert db.session.get(Deployment, deployment.id).state == "failed"


def test_reports_count_again_from_1_after_the_device_enrolls_again(agent_calls, enroll_secret,
                                                                     central, image, deploy,
                                                                     admin):
    """An agent that lost its state folder (reinstalled) enrolls again (a claim an admin
    approves) and numbers its reports from 1: are they applied to the unfinished deployment its
    old self had reported on? (Yes: the old token is dead, so nothing stale can arrive; else the
    deployment would hear nothing more until the silent sweep failed it.)"""
    from portal.services import claims

    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    report(agent_calls, token, deployment, seq=7, state="downloading", bytes_done=400)
    claim_id, new_token = agent_calls.enrolled(enroll_secret)
    assert claim_id != device_id
    claims.approve(admin, claims.get_claim(claim_id))
    answer = report(agent_calls, new_token, deployment, seq=1, state="downloading", bytes_done=600)
    assert answer.json == {"state": "downloading", "cancel": False}
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).bytes_done == 600
    assert report(agent_calls, new_token, deployment, seq=2, state="succeeded").json["state"] == \
        "succeeded"
    assert report(agent_calls, token, deployment, seq=8, state="failed").status_code == 401


def test_free_bytes_past_what_the_database_holds_is_a_400(agent_calls, enroll_secret):
    """Is a free_bytes no disk has (past 64 bits) refused with a clear 400 at enrollment and in a
    heartbeat, rather than a 500 from the database driver?"""
    refused = agent_calls.enroll(enroll_secret, free_bytes=10 ** 30)
    assert refused.status_code == 400 and "free_bytes" in refused.json["error"]["message"]
    device_id, token = agent_calls.enrolled(enroll_secret)
    response = agent_calls.call("POST", "/heartbeat", token, json={"free_bytes": 2 ** 63})
    assert response.status_code == 400 and "free_bytes" in response.json["error"]["message"]
    assert db.session.get(Device, device_id).free_bytes is None


def test_bytes_done_past_64_bits_is_a_400(agent_calls, enroll_secret, central, rescan, deploy):
    """Is a progress report with a bytes_done no file has refused (400), even for a deployment of
    empty files (nothing to clamp it to), rather than a 500 from the database driver?"""
    write_file(central.root, "Images/empty.img", b"")
    rescan(central)
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, "Images/empty.img")
    response = report(agent_calls, token, deployment, seq=1, state="downloading",
                      bytes_done=2 ** 64)
    assert response.status_code == 400 and "bytes_done" in response.json["error"]["message"]
    assert report(agent_calls, token, deployment, seq=1, state="downloading").status_code == 200


def test_an_admins_rename_outlives_heartbeats(agent_calls, enroll_secret, admin):
    """Does a name an admin gave a device stay through its agent's heartbeats and a re-enrollment
    with the same hostname, while a hostname that really changed still renames it?"""
    from portal.services import devices

    device_id, token = agent_calls.enrolled(enroll_secret)
    devices.update_device(admin, db.session.get(Device, device_id), {"name": "Reception PC"})
    assert agent_calls.call("POST", "/heartbeat", token, json={"hostname": "pc-01"}).status_code == 200
    db.session.expire_all()
    assert db.session.get(Device, device_id).name == "Reception PC"
    again_id, token = agent_calls.enrolled(enroll_secret, device_token=token)
    db.session.expire_all()
    assert again_id == device_id and db.session.get(Device, device_id).name == "Reception PC"
    agent_calls.call("POST", "/heartbeat", token, json={"hostname": "pc-02"})
    db.session.expire_all()
    assert db.session.get(Device, device_id).name == "pc-02"


@pytest.mark.parametrize("config_overrides", [{"DEPOT_DOWNLOAD_LINK_TTL": 30 * 86400}])
def test_a_dp_that_refuses_links_fails_the_deployment(agent_calls, enroll_secret, central, image,
                                                      deploy, config_overrides):
    """When the DP refuses to give a download link for a reason asking again will not change (a
    cloud DP whose file went, links longer than it allows), does the deployment fail with that
    reason instead of answering the agent 502 at every try and staying pending for good?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    response = agent_calls.call("GET", f"/deployments/{deployment.id}", token)
    assert response.status_code == 409, response.json
    assert response.json["error"]["code"] == "deployment_changed"
    assert "Central gives no download link" in response.json["error"]["message"]
    db.session.expire_all()
    row = db.session.get(Deployment, deployment.id)
    assert row.state == "failed" and "a central download link lives" in row.error
