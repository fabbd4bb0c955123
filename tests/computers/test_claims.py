"""Claims: an enrollment that matches a known device's serial and MAC without its device token is
a pending claim an admin approves (the records merge) or refuses; until then it gets a token but
no work, no manifest and no link, on the slow path and the agent fast path alike."""
import uuid

import pytest
from sqlalchemy import select

from portal.core.errors import DepotError, NotFound, PermissionDenied
from portal.extensions import db, get_redis
from portal.models import AuditEvent, Deployment, Device, DeviceGroup, Notification
from portal.services import agent_cache, claims, deployments, devices, enrollment
from portal.services.actors import Actor
from portal.services.agents import MAX_PENDING_CLAIMS
from portal.services.enrollment import hash_token
from tests.factories import AGENT_FACTS, make_user
from tests.helpers import AgentCalls


@pytest.fixture
def agent_calls(client):
    return AgentCalls(client, AGENT_FACTS)


@pytest.fixture
def enroll_secret(admin):
    _, secret = enrollment.create_enrollment_token(admin, "tests", days=1)
    return secret


@pytest.fixture
def known(agent_calls, enroll_secret, dps):
    """SEA-LT-042: enrolled, in a group, with a pending deployment; (device id, its token,
    deployment id)."""
    group = DeviceGroup(name="Seattle office")
    db.session.add(group)
    db.session.commit()
    device_id, token = agent_calls.enrolled(enroll_secret, hostname="SEA-LT-042")
    device = db.session.get(Device, device_id)
    device.group_id = group.id
    deployment = Deployment(batch_id=str(uuid.uuid4()), device_id=device_id,
                            device_name="SEA-LT-042", dp_id=dps["central"].id, dp_name="Central",
                            selection_reason="test", image="Images/Win11.wim", assets=[],
                            report_seq=5)
    db.session.add(deployment)
    db.session.commit()
    return device_id, token, deployment.id


def claim_on(agent_calls, enroll_secret, **facts):
    """An enrollment with the known device's serial and MAC, no device token: (id, token)."""
    response = agent_calls.enroll(enroll_secret, hostname="intruder", **facts)
    assert response.status_code == 201, response.json
    assert response.json["claim"] == "pending"
    return response.json["device_id"], response.json["device_token"]


def test_takeover_attempt_is_a_claim_that_gets_nothing(agent_calls, enroll_secret, known, admin):
    """Does an enrollment with a known serial and MAC but no device token leave the device and its
    token alone, while the claimer gets a token but no work, manifest, group or progress, on
    both paths (the idle poll answered from Redis too), with an audit entry and a notification
    for admins only?"""
    device_id, token, deployment_id = known
    technician = make_user("technician")
    claim_id, claim_token = claim_on(agent_calls, enroll_secret)
    device = db.session.get(Device, device_id)
    assert device.name == "SEA-LT-042" and device.token_hash == hash_token(token)
    claim = db.session.get(Device, claim_id)
    assert claim.claims_device_id == device_id and claim.group_id is None
    [item] = agent_calls.call("GET", "/work", token).json["deployments"]
    assert item["id"] == deployment_id
    for _ in range(3):  # the second and third: answered by the fast path once idle is marked
        assert agent_calls.call("GET", "/work", claim_token).json["deployments"] == []
    assert agent_calls.call("POST", "/heartbeat", claim_token, json=AGENT_FACTS).status_code == 200
    for method, path, body in [("GET", f"/deployments/{deployment_id}", None),
                               ("POST", f"/deployments/{deployment_id}/progress",
                                {"seq": 9, "state": "downloading"})]:
        refused = agent_calls.call(method, path, claim_token, json=body)
        assert refused.status_code == 403 and refused.json["error"]["code"] == "claim_pending"
    db.session.expire_all()
    assert db.session.get(Deployment, deployment_id).report_seq == 5
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "device.claim")).one()
    assert event.target == "SEA-LT-042" and event.details["claim_id"] == claim_id
    told = db.session.scalars(select(Notification).where(Notification.kind == "device.claim")).all()
    assert {n.user_id for n in told} == {admin.user.id}
    assert "claims to be SEA-LT-042" in told[0].message
    assert technician.id not in {n.user_id for n in told}


def test_a_claim_is_no_device_to_list_move_or_deploy_to(agent_calls, enroll_secret, known, admin,
                                                       dps):
    """Is a pending claim left out of the device list and group counts, and refused as a
    deployment target, a rename or a move (409 claim_pending)?"""
    device_id, _, _ = known
    claim_id, _ = claim_on(agent_calls, enroll_secret)
    items, total = devices.list_devices()
    assert [d.id for d in items] == [device_id] and total == 1
    with pytest.raises(DepotError) as refused:
        deployments.target_devices(device_ids=[claim_id])
    assert refused.value.code == "claim_pending"
    claim = db.session.get(Device, claim_id)
    for change in (lambda: devices.update_device(admin, claim, {"name": "mine"}),
                   lambda: devices.move_devices(admin, [claim_id], None)):
        with pytest.raises(DepotError) as refused:
            change()
        assert refused.value.code == "claim_pending"


def test_approving_merges_the_claim_into_the_device(agent_calls, enroll_secret, known, admin):
    """Approved: does the device keep its id, group and deployments, take the claimer's facts
    and token (the old token refused at once, even cached), the claimer's record go, the
    deployment come to the claimer's agent with reports counted from 1, and an audit entry?"""
    device_id, token, deployment_id = known
    assert agent_calls.call("GET", "/work", token).status_code == 200  # cached
    claim_id, claim_token = claim_on(agent_calls, enroll_secret, ip_addresses=["10.9.9.9"])
    assert agent_calls.call("GET", "/work", claim_token).json["deployments"] == []
    group_id = db.session.get(Device, device_id).group_id
    device = claims.approve(admin, claims.get_claim(claim_id))
    assert device.id == device_id and device.group_id == group_id
    assert device.ip_addresses == ["10.9.9.9"] and device.name == "intruder"
    assert db.session.get(Device, claim_id) is None
    assert get_redis().get(agent_cache.token_key(hash_token(token))) == b"-"
    moved = get_redis().get(agent_cache.token_key(hash_token(claim_token)))
    assert moved == str(device_id).encode()
    assert agent_calls.call("GET", "/work", token).status_code == 401
    [item] = agent_calls.call("GET", "/work", claim_token).json["deployments"]
    assert item["id"] == deployment_id
    progress = agent_calls.call("POST", f"/deployments/{deployment_id}/progress", claim_token,
                                json={"seq": 1, "state": "downloading"})
    assert progress.status_code == 200 and progress.json["state"] == "downloading"
    event = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "device.claim_approve")).one()
    assert event.details["claim_id"] == claim_id and event.target == "intruder"
    with pytest.raises(NotFound) as gone:
        claims.get_claim(claim_id)
    assert gone.value.status == 404


def test_refusing_removes_the_claimer_only(agent_calls, enroll_secret, known, admin):
    """Refused: is the claimer's record gone and its token refused at once, the device and its
    token untouched, with an audit entry?"""
    device_id, token, _ = known
    claim_id, claim_token = claim_on(agent_calls, enroll_secret)
    assert agent_calls.call("GET", "/work", claim_token).status_code == 200  # cached
    claims.refuse(admin, claims.get_claim(claim_id))
    assert db.session.get(Device, claim_id) is None
    assert agent_calls.call("GET", "/work", claim_token).status_code == 401
    assert agent_calls.call("GET", "/work", token).status_code == 200
    assert db.session.get(Device, device_id).token_hash == hash_token(token)
    event = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "device.claim_refuse")).one()
    assert event.details["claim_id"] == claim_id


def test_claims_on_one_device_are_capped(agent_calls, enroll_secret, known, admin):
    """Past MAX_PENDING_CLAIMS waiting claims on one device, is another enrollment refused with
    409 claims_waiting (no record, no notification), and taken again once one is refused?"""
    for _ in range(MAX_PENDING_CLAIMS):
        claim_on(agent_calls, enroll_secret)
    told = db.session.scalar(select(db.func.count(Notification.id)))
    refused = agent_calls.enroll(enroll_secret, hostname="intruder")
    assert refused.status_code == 409 and refused.json["error"]["code"] == "claims_waiting"
    assert len(claims.list_claims(known[0])) == MAX_PENDING_CLAIMS
    assert db.session.scalar(select(db.func.count(Notification.id))) == told
    claims.refuse(admin, claims.list_claims(known[0])[0])
    claim_on(agent_calls, enroll_secret)


def test_forgetting_the_device_removes_its_claims(agent_calls, enroll_secret, known, admin):
    """Is a device forgotten with its pending claims (their tokens refused), none left dangling?"""
    device_id, _, _ = known
    claim_id, claim_token = claim_on(agent_calls, enroll_secret)
    devices.forget_device(admin, db.session.get(Device, device_id))
    assert db.session.get(Device, claim_id) is None
    assert agent_calls.call("GET", "/work", claim_token).status_code == 401


def test_a_claimer_with_its_own_token_stays_a_claim(agent_calls, enroll_secret, known):
    """Does a claimer that re-enrolls with its own (claim's) token stay the same pending claim,
    not become the device?"""
    device_id, _, _ = known
    claim_id, claim_token = claim_on(agent_calls, enroll_secret)
    again_id, _ = agent_calls.enrolled(enroll_secret, device_token=claim_token)
    assert again_id == claim_id
    assert db.session.get(Device, claim_id).claims_device_id == device_id


def test_console_claims_buttons_for_admins_only(agent_calls, enroll_secret, known, login_as):
    """Do the devices page and the device's page list the claim, with Approve and Refuse for
    admins only; are technicians and viewers refused (403, nothing changed); does an admin's
    refuse and approve work, and a decided claim answer 404?"""
    device_id, _, _ = known
    claim_id, _ = claim_on(agent_calls, enroll_secret)
    approve_url = f"/computers/claims/{claim_id}/approve"
    refuse_url = f"/computers/claims/{claim_id}/refuse"
    for role in ("technician", "viewer"):
        console = login_as(role)
        for url in ("/computers/", f"/computers/{device_id}"):
            html = console.get(url).get_data(as_text=True)
            assert f'id="claim-{claim_id}"' in html and "SEA-LT-042" in html
            assert approve_url not in html and refuse_url not in html
        assert console.post(approve_url).status_code == 403
        assert console.post(refuse_url).status_code == 403
    db.session.expire_all()
    assert db.session.get(Device, claim_id).claims_device_id == device_id
    console = login_as("admin")
    for url in ("/computers/", f"/computers/{device_id}"):
        html = console.get(url).get_data(as_text=True)
        assert approve_url in html and refuse_url in html
    claim_html = console.get(f"/computers/{claim_id}").get_data(as_text=True)
    assert "Claims to be" in claim_html and 'id="device-form"' not in claim_html
    refused = console.post(refuse_url)
    assert refused.status_code == 303 and refused.headers["Location"].endswith(
        f"/computers/{device_id}")
    assert console.post(refuse_url).status_code == 404
    second_id, second_token = claim_on(agent_calls, enroll_secret)
    approved = console.post(f"/computers/claims/{second_id}/approve", hx=True)
    assert approved.status_code == 200 and approved.headers["HX-Redirect"].endswith(
        f"/computers/{device_id}")
    db.session.expire_all()
    assert db.session.get(Device, device_id).token_hash == hash_token(second_token)
    assert console.post(f"/computers/claims/{device_id}/approve").status_code == 404


def test_a_technician_may_not_decide_through_the_service(agent_calls, enroll_secret, known):
    """Does the service refuse a technician (PermissionDenied, 403), as the console does, and
    leave the claim pending?"""
    claim_id, _ = claim_on(agent_calls, enroll_secret)
    technician = Actor(make_user("technician"), via="api")
    for decide in (claims.approve, claims.refuse):
        with pytest.raises(PermissionDenied) as refused:
            decide(technician, claims.get_claim(claim_id))
        assert refused.value.status == 403
    assert claims.get_claim(claim_id).is_claim


def test_approving_while_redis_is_down_still_merges(agent_calls, enroll_secret, known, admin,
                                                    monkeypatch, caplog):
    """With Redis not answering, is the approval committed all the same (the database decides;
    the cache's failure logged as an error), and the device served by the slow path after?"""
    from redis.exceptions import ConnectionError as RedisDown

    device_id, token, deployment_id = known
    claim_id, claim_token = claim_on(agent_calls, enroll_secret)

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise RedisDown("no Redis")
            return fail

    monkeypatch.setattr(agent_cache, "get_redis", lambda: Down())
    claims.approve(admin, claims.get_claim(claim_id))
    assert "moved device token not re-cached" in caplog.text
    db.session.expire_all()
    assert db.session.get(Device, device_id).token_hash == hash_token(claim_token)
    monkeypatch.undo()
    get_redis().delete(agent_cache.token_key(hash_token(claim_token)))  # what the TTL would do
    [item] = agent_calls.call("GET", "/work", claim_token).json["deployments"]
    assert item["id"] == deployment_id


def test_a_viewer_scoped_to_sites_sees_no_claims(agent_calls, enroll_secret, known, login_as):
    """A claim is in no group, so at no site: does a viewer scoped to sites see none of it (its
    serial, MACs and addresses are those of a device of some site) on the devices page?"""
    claim_id, _ = claim_on(agent_calls, enroll_secret)
    html = login_as("viewer", sites=["Seattle"]).get("/computers/").get_data(as_text=True)
    assert f'id="claim-{claim_id}"' not in html and "intruder" not in html
    assert f'id="claim-{claim_id}"' in login_as("viewer").get("/computers/").get_data(as_text=True)


def test_a_claim_id_past_the_column_is_not_found(login_as):
    """Is an approve or refuse of an id no column holds a 404, not a database error?"""
    console = login_as("admin")
    for action in ("approve", "refuse"):
        assert console.post(f"/computers/claims/{2 ** 63}/{action}").status_code == 404
