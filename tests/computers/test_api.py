"""The Computer Management API: /api/v1/devices, /groups, /boundaries, /enrollment-tokens."""
import pytest

from portal.extensions import db
from portal.models import AuditEvent, Boundary, Device, DeviceGroup, EnrollmentToken
from portal.services import boundaries, device_groups
from portal.services.actors import Actor
from tests.factories import add_device


def error_of(response):
    return response.get_json()["error"]


def test_devices_list_search_filter_and_pages(api_as):
    """Does GET /devices search, filter by group (or none) and status, and paginate?"""
    api = api_as("viewer")
    group = device_groups.create_group(Actor(None), "Seattle office")
    sea = add_device("SEA-1", group=group, seen_ago=5, ips=["10.2.0.7"])
    add_device("SLC-1", seen_ago=None)
    add_device("SLC-2", seen_ago=99999)
    body = api.get("/api/v1/devices?q=10.2.0").get_json()
    assert [d["name"] for d in body["items"]] == ["SEA-1"] and body["total"] == 1
    item = body["items"][0]
    assert item["status"] == "online" and item["group"] == "Seattle office"
    assert item["ip_addresses"] == ["10.2.0.7"] and "token_hash" not in item
    assert [d["id"] for d in api.get(f"/api/v1/devices?group_id={group.id}").get_json()["items"]] == [sea.id]
    assert [d["name"] for d in api.get("/api/v1/devices?group_id=none").get_json()["items"]] == ["SLC-1", "SLC-2"]
    assert [d["name"] for d in api.get("/api/v1/devices?status=offline").get_json()["items"]] == ["SLC-2"]
    paged = api.get("/api/v1/devices?per_page=2").get_json()
    assert len(paged["items"]) == 2 and paged["total"] == 3 and paged["next_page"] == 2
    bad = api.get("/api/v1/devices?status=asleep")
    assert bad.status_code == 400 and "status must be one of" in error_of(bad)["message"]


def test_device_get_patch_delete(api_as):
    """Can an admin read, rename, move and forget a device, each change audited?"""
    api = api_as("admin")
    group = device_groups.create_group(Actor(None), "Remote workers")
    device_id = add_device("LT-1").id
    body = api.get(f"/api/v1/devices/{device_id}").get_json()
    assert body["name"] == "LT-1" and body["deployments"] == [] and body["status"] == "never"
    patched = api.patch(f"/api/v1/devices/{device_id}", json={"name": "LT-ONE", "group_id": group.id})
    assert patched.status_code == 200
    assert patched.get_json()["name"] == "LT-ONE" and patched.get_json()["group_id"] == group.id
    assert api.patch(f"/api/v1/devices/{device_id}", json={"group_id": None}).get_json()["group_id"] is None
    assert api.delete(f"/api/v1/devices/{device_id}").status_code == 204
    assert api.get(f"/api/v1/devices/{device_id}").status_code == 404
    logged = {e.action for e in db.session.query(AuditEvent).filter_by(actor=api.user.email)}
    assert {"device.update", "device.forget"} <= logged


@pytest.mark.parametrize("body, code, message", [
    ({"serial": "X"}, 400, "unknown field(s): serial"),
    ({"group_id": 999}, 400, "no group 999"),
    ({"group_id": "abc"}, 400, "group_id must be a positive whole number"),
    ({"group_id": 10 ** 30}, 400, "group_id must be a positive whole number"),
    ({"group_id": "²"}, 400, "group_id must be a positive whole number"),
    ({"name": ""}, 400, "name must not be empty"),
    ([1, 2], 400, "must be a JSON object"),
])
def test_device_patch_bad_input(api_as, body, code, message):
    """Is a PATCH with an unknown field, an unknown group or a bad name refused, changing nothing?"""
    api = api_as("admin")
    device = add_device("KEEP")
    response = api.patch(f"/api/v1/devices/{device.id}", json=body)
    assert response.status_code == code and message in error_of(response)["message"]
    db.session.refresh(device)
    assert device.name == "KEEP" and device.group_id is None


def test_bulk_move_moves_all_or_none(api_as):
    """Does POST /devices/move move all, or none with the unknown ids named?"""
    api = api_as("admin")
    group = device_groups.create_group(Actor(None), "SLC office")
    a, b = add_device("A"), add_device("B")
    response = api.post("/api/v1/devices/move", json={"device_ids": [a.id, 777], "group_id": group.id})
    assert response.status_code == 400
    assert error_of(response) == {"code": "unknown_devices", "message": "no device 777; nothing was moved"}
    db.session.expire_all()
    assert a.group_id is None
    response = api.post("/api/v1/devices/move", json={"device_ids": [a.id, b.id], "group_id": group.id})
    assert response.status_code == 200
    assert {d["group_id"] for d in response.get_json()["items"]} == {group.id}
    missing = api.post("/api/v1/devices/move", json={"device_ids": [a.id]})
    assert missing.status_code == 400 and "give group_id" in error_of(missing)["message"]
    extra = api.post("/api/v1/devices/move", json={"device_ids": [a.id], "group_id": None, "x": 1})
    assert extra.status_code == 400 and "unknown field(s): x" in error_of(extra)["message"]


def test_admin_creates_changes_and_deletes_groups(api_as, dps):
    """Can an admin create, read, change and delete groups with preferred and fallback DPs?"""
    api = api_as("admin")
    sea, slc = dps["seattle"], dps["slc"]
    created = api.post("/api/v1/groups", json={"name": "Seattle office", "preferred_dp_id": sea.id,
                                               "fallback_dp_ids": [slc.id, dps["central"].id]})
    assert created.status_code == 201
    group = created.get_json()
    assert group["fallback_dp_ids"] == [slc.id, dps["central"].id] and group["device_count"] == 0
    add_device(group=db.session.get(DeviceGroup, group["id"]))
    listed = api.get("/api/v1/groups").get_json()
    assert [(g["name"], g["device_count"]) for g in listed["items"]] == [("Seattle office", 1)]
    patched = api.patch(f"/api/v1/groups/{group['id']}", json={"preferred_dp_id": slc.id,
                                                              "fallback_dp_ids": [sea.id]})
    assert patched.status_code == 200 and patched.get_json()["preferred_dp_id"] == slc.id
    assert api.get(f"/api/v1/groups/{group['id']}").get_json()["fallback_dp_ids"] == [sea.id]
    assert api.delete(f"/api/v1/groups/{group['id']}").status_code == 204
    assert api.get("/api/v1/groups").get_json() == {"items": [], "ungrouped": 1}


@pytest.mark.parametrize("body, status, message", [
    ({"name": "Seattle office"}, 409, "a group named Seattle office already exists"),
    ({"name": "X", "preferred_dp_id": 999}, 400, "no distribution point 999"),
    ({"name": "X", "fallback_dp_ids": [999]}, 400, "no distribution point 999"),
    ({"name": "X", "fallback_dp_ids": [10 ** 30]}, 400, "must be a positive whole number"),
    ({"name": "X", "colour": "red"}, 400, "unknown field(s): colour"),
    ({"name": ""}, 400, "group name must not be empty"),
])
def test_bad_group_input_is_refused_with_a_reason(api_as, dps, body, status, message):
    """Are duplicate names, unknown DPs and unknown fields refused with a clear message?"""
    api = api_as("admin")
    device_groups.create_group(Actor(None), "Seattle office")
    response = api.post("/api/v1/groups", json=body)
    assert response.status_code == status and message in error_of(response)["message"]
    assert db.session.query(DeviceGroup).count() == 1


def test_admin_adds_lists_and_deletes_boundaries(api_as, dps):
    """Can an admin add, list and delete boundaries, with bad subnets refused clearly?"""
    api = api_as("admin")
    created = api.post("/api/v1/boundaries", json={"name": "Seattle LAN", "cidr": "10.2.0.0/16",
                                                   "dp_id": dps["seattle"].id})
    assert created.status_code == 201 and created.get_json()["cidr"] == "10.2.0.0/16"
    bad = api.post("/api/v1/boundaries", json={"name": "x", "cidr": "10.2.5.1/16", "dp_id": dps["slc"].id})
    assert bad.status_code == 400 and error_of(bad)["code"] == "host_bits_set"
    assert "did you mean 10.2.0.0/16?" in error_of(bad)["message"]
    dup = api.post("/api/v1/boundaries", json={"name": "x", "cidr": "10.2.0.0/16", "dp_id": dps["slc"].id})
    assert dup.status_code == 409
    unknown = api.post("/api/v1/boundaries", json={"name": "x", "cidr": "10.5.0.0/16", "dp_id": 999})
    assert unknown.status_code == 400 and "no distribution point 999" in error_of(unknown)["message"]
    assert [b["name"] for b in api.get("/api/v1/boundaries").get_json()["items"]] == ["Seattle LAN"]
    url = f"/api/v1/boundaries/{created.get_json()['id']}"
    patched = api.patch(url, json={"cidr": "10.2.0.0/15", "dp_id": dps["slc"].id})
    assert patched.status_code == 200 and patched.get_json()["cidr"] == "10.2.0.0/15"
    assert api.get(url).get_json()["dp_id"] == dps["slc"].id
    refused = api.patch(url, json={"site": "x"})
    assert refused.status_code == 400 and "unknown field(s): site" in error_of(refused)["message"]
    assert api.delete(f"/api/v1/boundaries/{created.get_json()['id']}").status_code == 204
    assert api.get("/api/v1/boundaries").get_json()["items"] == []


def test_enrollment_token_is_shown_once_and_can_be_revoked(api_as):
    """Does POST /enrollment-tokens give the token once (201), the list never, and revoke work?"""
    api = api_as("admin")
    group = device_groups.create_group(Actor(None), "Remote workers")
    created = api.post("/api/v1/enrollment-tokens", json={"name": "Remote", "days": 3,
                                                          "group_id": group.id})
    assert created.status_code == 201
    body = created.get_json()
    assert body["token"].startswith("det_") and body["enrollment_token"]["group_id"] == group.id
    assert f"--enroll-token {body['token']}" in body["command"]
    listed = api.get("/api/v1/enrollment-tokens").get_json()["items"]
    assert [t["state"] for t in listed] == ["valid"] and body["token"] not in str(listed)
    revoked = api.post(f"/api/v1/enrollment-tokens/{listed[0]['id']}/revoke")
    assert revoked.status_code == 200 and revoked.get_json()["state"] == "revoked"
    for bad, message in [({"name": "x", "days": 0}, "between 1 and 365"),
                         ({"name": "x", "group_id": 999}, "no group 999"),
                         ({"name": "x", "group_id": "Remote"}, "group_id must be"),
                         ({"name": "x", "expires": "never"}, "unknown field(s): expires")]:
        response = api.post("/api/v1/enrollment-tokens", json=bad)
        assert response.status_code == 400 and message in error_of(response)["message"]
    assert db.session.query(EnrollmentToken).count() == 1


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_only_admins_write(api_as, dps, role):
    """May technicians and viewers read Computer Management but change nothing (403)?"""
    api = api_as(role)
    group = device_groups.create_group(Actor(None), "G")
    boundary = boundaries.create_boundary(Actor(None), "LAN", "10.9.0.0/16", dps["central"].id)
    device = add_device("D")
    assert api.get("/api/v1/devices").status_code == 200
    assert api.get("/api/v1/groups").status_code == 200
    assert api.get("/api/v1/boundaries").status_code == 200
    refused = [
        api.patch(f"/api/v1/devices/{device.id}", json={"name": "X"}),
        api.delete(f"/api/v1/devices/{device.id}"),
        api.post("/api/v1/devices/move", json={"device_ids": [device.id], "group_id": group.id}),
        api.post("/api/v1/groups", json={"name": "H"}),
        api.patch(f"/api/v1/groups/{group.id}", json={"name": "H"}),
        api.delete(f"/api/v1/groups/{group.id}"),
        api.post("/api/v1/boundaries", json={"name": "b", "cidr": "10.0.0.0/8", "dp_id": dps["central"].id}),
        api.patch(f"/api/v1/boundaries/{boundary.id}", json={"name": "x"}),
        api.delete(f"/api/v1/boundaries/{boundary.id}"),
        api.get("/api/v1/enrollment-tokens"),
        api.post("/api/v1/enrollment-tokens", json={"name": "t"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert db.session.query(Device).filter_by(name="D", group_id=None).count() == 1
    assert db.session.query(DeviceGroup).count() == 1
    assert db.session.get(Boundary, boundary.id).name == "LAN"
    assert db.session.query(EnrollmentToken).count() == 0


def test_ids_too_big_for_the_database_are_a_400(api_as, dps):
    """Is an id no database row can have (past 32 bits) a clear 400 everywhere one is given in
    a body, rather than a 500 from the database driver?"""
    api = api_as("admin")
    device = add_device("KEEP")
    huge = 10 ** 30
    for method, url, body in (
            ("post", "/api/v1/boundaries", {"name": "b", "cidr": "10.0.0.0/8", "dp_id": huge}),
            ("post", "/api/v1/devices/move", {"device_ids": [device.id, huge], "group_id": None}),
            ("post", "/api/v1/enrollment-tokens", {"name": "x", "group_id": huge})):
        response = getattr(api, method)(url, json=body)
        assert response.status_code == 400, (url, response.get_json())
    assert db.session.query(Boundary).count() == 0
    assert db.session.query(EnrollmentToken).count() == 0
