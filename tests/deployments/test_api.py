"""The deployments API: create (201, 409 with reasons), list, get, cancel, preview."""
from portal.extensions import db
from portal.models import Deployment
from tests.factories import make_device, make_group
from tests.node_fixtures import IMAGE, PACK


def test_create_get_list_and_cancel(api_as, central, seattle_image):
    """Can a technician deploy to a group, read it back, list it, and cancel it?"""
    api = api_as("technician")
    group = make_group("Seattle office", preferred=seattle_image)
    device = make_device("pc-1", group=group)
    created = api.post("/api/v1/deployments", json={"group_id": group.id, "image": IMAGE})
    assert created.status_code == 201, created.get_json()
    [item] = created.get_json()["items"]
    assert (item["device_id"], item["dp_id"], item["state"]) == (device.id, seattle_image.id, "pending")
    assert item["bytes_total"] == 16 * 64 and item["selection_reason"] == "preferred DP of group Seattle office"
    one = api.get(f"/api/v1/deployments/{item['id']}").get_json()
    assert {k: one[k] for k in ("id", "device_id", "dp_id", "state", "bytes_done", "error")} == {
        "id": item["id"], "device_id": device.id, "dp_id": seattle_image.id, "state": "pending",
        "bytes_done": 0, "error": None}
    listed = api.get(f"/api/v1/deployments?state=pending&group_id={group.id}").get_json()
    assert [d["id"] for d in listed["items"]] == [item["id"]] and listed["total"] == 1
    assert api.get("/api/v1/deployments?state=failed").get_json()["items"] == []
    cancelled = api.post(f"/api/v1/deployments/{item['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    again = api.post(f"/api/v1/deployments/{item['id']}/cancel")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "deployment_finished"


def test_an_ineligible_dp_is_a_409_with_the_reasons(api_as, central, seattle_image):
    """Does asking for a DP that lacks the Platform Pack answer 409 with the reasons listed?"""
    api = api_as("admin")
    device = make_device("pc-1")
    refused = api.post("/api/v1/deployments", json={
        "device_ids": [device.id], "image": IMAGE, "platform_pack": PACK, "dp_id": seattle_image.id})
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "dp_not_eligible"
    assert error["reasons"] == ["Platform Packs/Dell is missing at Seattle"]
    assert "Seattle cannot serve this deployment" in error["message"]
    assert db.session.query(Deployment).count() == 0


def test_bad_requests_say_what_is_wrong(api_as, content):
    """Are a missing body, unknown fields, bad ids, unknown devices and images clear 4xx?"""
    api = api_as("admin")
    device = make_device("pc-1")
    cases = [
        ({"image": IMAGE}, 400, "choose the devices"),
        ({"device_ids": [device.id], "image": IMAGE, "colour": "red"}, 400, "unknown field"),
        ({"device_ids": [device.id], "image": "Images/none.wim"}, 404, "not at central"),
        ({"device_ids": [4242], "image": IMAGE}, 404, "no device 4242"),
        ({"device_ids": [device.id], "image": IMAGE, "dp_id": "one"}, 400, "dp_id must be"),
    ]
    for body, status, text in cases:
        response = api.post("/api/v1/deployments", json=body)
        assert response.status_code == status, (body, response.get_json())
        assert text in response.get_json()["error"]["message"]
    assert api.post("/api/v1/deployments", data="nope").status_code == 415  # not sent as JSON
    assert api.post("/api/v1/deployments", data="nope",
                    content_type="application/json").status_code == 400
    assert api.get("/api/v1/deployments?device_id=x").status_code == 400
    assert api.get("/api/v1/deployments/999").status_code == 404


def test_viewers_cannot_deploy_or_cancel(api_as, content):
    """Can a viewer's token create, cancel, or preview a deployment? (No: 403.)"""
    admin = api_as("admin")
    device = make_device("pc-1")
    [item] = admin.post("/api/v1/deployments", json={"device_ids": [device.id],
                                                     "image": IMAGE}).get_json()["items"]
    viewer = api_as("viewer")
    assert viewer.post("/api/v1/deployments", json={"device_ids": [device.id],
                                                    "image": IMAGE}).status_code == 403
    assert viewer.post(f"/api/v1/deployments/{item['id']}/cancel").status_code == 403
    assert viewer.get(f"/api/v1/deployments/preview?device_id={device.id}&image={IMAGE}").status_code == 403
    assert viewer.get(f"/api/v1/deployments/{item['id']}").status_code == 200
    assert api_as("admin").client.get("/api/v1/deployments").status_code == 401


def test_preview_names_each_devices_dp_and_why(api_as, central, seattle_image):
    """Does the preview say which DP each device would use and why each DP is (in)eligible?"""
    api = api_as("technician")
    group = make_group("Seattle office", preferred=seattle_image)
    device = make_device("pc-1", group=group)
    answer = api.get(f"/api/v1/deployments/preview?group_id={group.id}&image={IMAGE}"
                     f"&platform_pack={PACK}").get_json()
    [entry] = answer["devices"]
    assert entry["device_id"] == device.id and entry["dp"]["name"] == "Central"
    assert entry["skipped"][0]["reasons"] == ["Platform Packs/Dell is missing at Seattle"]
    seattle = next(d for d in answer["dps"] if d["dp"]["name"] == "Seattle")
    assert (seattle["eligible"], seattle["copyable"]) == (False, [PACK])


def test_one_image_platform_pack_and_answer_file_each(api_as, content):
    """Is a list where one asset key belongs (image, platform_pack, answer_file) a clear 400 that
    creates nothing, rather than a 500?"""
    api = api_as("admin")
    device = make_device("pc-1")
    for body in ({"image": [IMAGE]}, {"image": IMAGE, "platform_pack": [PACK]},
                 {"image": IMAGE, "answer_file": ["Answer Files/x.xml"]}):
        response = api.post("/api/v1/deployments", json={"device_ids": [device.id], **body})
        assert response.status_code == 400, (body, response.get_json())
        assert "must be an asset of" in response.get_json()["error"]["message"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Deployment)) == 0


def test_ids_too_big_for_the_database_are_a_400(api_as, content):
    """Is a device, group or DP id past 32 bits a clear 400 (create, list), not a 500?"""
    api = api_as("admin")
    device = make_device("pc-1")
    huge = 10 ** 30
    for body in ({"device_ids": [huge], "image": IMAGE}, {"group_id": huge, "image": IMAGE},
                 {"device_ids": [device.id], "image": IMAGE, "dp_id": huge}):
        response = api.post("/api/v1/deployments", json=body)
        assert response.status_code == 400, (body, response.get_json())
    for arg in ("device_id", "group_id", "dp_id"):
        assert api.get(f"/api/v1/deployments?{arg}={huge}").status_code == 400
