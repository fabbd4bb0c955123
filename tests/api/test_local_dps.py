"""Local DPs over the API against a real DP node: add, test, change, forget, and bad input."""
import os

import pytest

from portal.extensions import db
from portal.models import AuditEvent, DistributionPoint, Job
from portal.services import distribution_points as dps
from portal.services import secrets
from portal.storage.answers import host_port
from tests.factories import write_file
from tests.node_fixtures import KEY

DPS = "/api/v1/distribution-points"


def local_dp(api, node, name="Seattle", site="Seattle", key=KEY, url=None):
    return api.post(DPS, json={"name": name, "kind": "local", "url": url or node.url, "key": key,
                               "site": site, "allow_plain_http": True})


def saved_nothing():
    """Only central, no job, no audit entry for a DP: what a refused request must leave."""
    db.session.expire_all()
    names = [dp.name for dp in db.session.query(DistributionPoint)]
    return (names == ["Central"] and db.session.query(Job).count() == 0
            and db.session.query(AuditEvent).filter(AuditEvent.action.like("dp.%")).count() == 0)


def error_of(response) -> tuple[int, str, str]:
    error = response.get_json()["error"]
    return response.status_code, error["code"], error["message"]


def test_add_local_dp_stores_the_key_encrypted_and_queues_a_rescan(api_as, node):
    """Is a local DP created (201) with its key encrypted, never echoed, and a first rescan queued?"""
    response = local_dp(api_as("admin"), node)
    assert response.status_code == 201
    assert KEY not in response.get_data(as_text=True)
    body = response.get_json()
    assert (body["name"], body["kind"], body["site"], body["url"], body["status"]) == (
        "Seattle", "local", "Seattle", node.url, "online")
    assert body["free_bytes"] > 0 and body["total_bytes"] >= body["free_bytes"]
    dp = db.session.get(DistributionPoint, body["id"])
    assert dp.secret != KEY and KEY not in dp.secret and secrets.decrypt(dp.secret) == KEY
    job = db.session.query(Job).one()
    assert (job.kind, job.state, job.dp_id) == ("rescan", "queued", dp.id)


def test_first_rescan_shows_the_node_content_against_central(api_as, central, node, work):
    """After the first rescan, is a hand-copied file only-here, a same one current, a changed one outdated?"""
    write_file(central.root, "Images/Win11.wim", b"same bytes" * 1000)
    write_file(central.root, "Images/Win10.wim", b"central's newer build")
    write_file(central.root, "Answer Files/unattend.xml", b"<central/>")
    api = api_as("admin")
    assert api.post(f"{DPS}/{central.id}/rescan").status_code == 202
    work()
    write_file(node.root, "Images/Win11.wim", b"same bytes" * 1000)
    write_file(node.root, "Images/Win10.wim", b"an older build")
    write_file(node.root, "Images/Branch-Only.wim", b"copied in by hand at the branch")
    dp_id = local_dp(api, node).get_json()["id"]
    work()
    items = api.get(f"{DPS}/{dp_id}/content").get_json()["items"]
    assert {i["key"]: i["status"] for i in items} == {
        "Answer Files/unattend.xml": "missing",
        "Images/Branch-Only.wim": "only-here",
        "Images/Win10.wim": "outdated",
        "Images/Win11.wim": "current",
    }
    listed = api.get(f"{DPS}/{dp_id}").get_json()
    assert listed["counts"] == {"current": 1, "outdated": 1, "only-here": 1, "missing": 1}
    assert listed["last_scan_at"] and listed["status"] == "online"


def test_wrong_key_is_refused_and_nothing_is_saved(api_as, node):
    """Does a key the node refuses give a message saying so, and save nothing?"""
    response = local_dp(api_as("admin"), node, key="not-the-node-key-at-all")
    status, code, message = error_of(response)
    assert (status, code) == (400, "dp_error")
    assert message.startswith("Seattle's DP node refused this key: enter the key the node was "
                              "started with") and "not-the-node-key" not in message
    assert saved_nothing()


def test_unreachable_node_is_refused_and_nothing_is_saved(api_as, refused_url):
    """Does a URL where nothing listens give a message that the DP does not answer, and save nothing?"""
    url = refused_url
    response = local_dp(api_as("admin"), None, url=url)
    status, code, message = error_of(response)
    assert (status, code) == (502, "dp_unreachable")
    assert message == f"Depot could not connect to {host_port(url)} (connection refused)"
    assert saved_nothing()


@pytest.mark.parametrize("changes, message", [
    ({"url": "ftp://dp.example.com"}, "url must look like https://"),
    ({"url": "dp.example.com:8081"}, "url must look like https://"),
    ({"url": "http://dp.example.com/?x=1"}, "must not have a query"),
    ({"key": "short"}, "key must be the node's DEPOT_DP_KEY (16 characters or more)"),
    ({"key": None}, "key must be the node's DEPOT_DP_KEY"),
    ({"name": "Sea\tttle"}, "name must not contain control characters"),
    ({"name": "Sea\u0085ttle"}, "name must not contain control characters"),
    ({"name": "  "}, "name must not be empty"),
    ({"site": "Seat\nttle"}, "site must not contain control characters"),
    ({"kind": "nfs"}, 'kind must be "local"'),
])
def test_bad_input_is_a_400_and_saves_nothing(api_as, node, changes, message):
    """Are a bad URL, a short key, a control character in a name and an unknown kind each a 400?"""
    body = {"name": "Seattle", "kind": "local", "url": node.url, "key": KEY, "site": "Seattle",
            "allow_plain_http": True}
    body.update(changes)
    status, code, text = error_of(api_as("admin").post(DPS, json=body))
    assert (status, code) == (400, "invalid") and message in text
    assert saved_nothing()


def test_duplicate_name_is_a_409(api_as, node):
    """Is a second DP with a name already taken (central's too) refused with 409, saving nothing more?"""
    api = api_as("admin")
    assert local_dp(api, node).status_code == 201
    for name in ("Seattle", "Central"):
        status, code, message = error_of(local_dp(api, node, name=name))
        assert (status, code) == (409, "conflict")
        assert f"a distribution point named {name} already exists" in message
    assert db.session.query(DistributionPoint).count() == 2
    assert db.session.query(Job).count() == 1


@pytest.mark.parametrize("role", ["viewer", "technician"])
def test_only_admins_manage_local_dps(api_as, node, role, central):
    """Are add, test, change and forget a 403 for viewers and technicians, changing nothing?"""
    dp_id = local_dp(api_as("admin"), node).get_json()["id"]
    api = api_as(role)
    assert local_dp(api, node, name="Boise").status_code == 403
    assert api.post(f"{DPS}/test", json={"url": node.url, "key": KEY, "allow_plain_http": True}).status_code == 403
    assert api.patch(f"{DPS}/{dp_id}", json={"disabled": True}).status_code == 403
    assert api.delete(f"{DPS}/{dp_id}").status_code == 403
    assert api.delete(f"{DPS}/{central.id}").status_code == 403
    assert sorted(dp.name for dp in db.session.query(DistributionPoint)) == ["Central", "Seattle"]
    assert db.session.get(DistributionPoint, dp_id).disabled is False


def test_connection_test_saves_nothing(api_as, node, refused_url):
    """Does the test endpoint report the node's version and space, or why not, without saving?"""
    api = api_as("admin")
    ok = api.post(f"{DPS}/test", json={"url": node.url, "key": KEY, "allow_plain_http": True})
    assert ok.status_code == 200
    body = ok.get_json()
    assert body["ok"] is True and body["health"]["version"] and body["health"]["free_bytes"] > 0
    wrong = api.post(f"{DPS}/test", json={"url": node.url, "key": "x" * 20, "allow_plain_http": True})
    assert error_of(wrong)[:2] == (400, "dp_error") and "refused this key" in error_of(wrong)[2]
    down = api.post(f"{DPS}/test", json={"url": refused_url, "key": KEY, "allow_plain_http": True})
    assert error_of(down)[:2] == (502, "dp_unreachable")
    assert "Depot could not connect to" in error_of(down)[2]
    assert error_of(api.post(f"{DPS}/test", json={"url": "nope", "key": KEY}))[0] == 400
    assert saved_nothing()


def test_disabled_dp_shows_as_disabled(api_as, node):
    """After PATCH disabled=true, does GET (one and list) say status "disabled", and false undo it?"""
    api = api_as("admin")
    dp_id = local_dp(api, node).get_json()["id"]
    patched = api.patch(f"{DPS}/{dp_id}", json={"disabled": True})
    assert patched.status_code == 200 and patched.get_json()["status"] == "disabled"
    one = api.get(f"{DPS}/{dp_id}").get_json()
    assert (one["status"], one["disabled"]) == ("disabled", True)
    assert "maintenance" in one["status_reason"]
    listed = {i["id"]: i["status"] for i in api.get(DPS).get_json()["items"]}
    assert listed[dp_id] == "disabled"
    assert api.patch(f"{DPS}/{dp_id}", json={"disabled": "yes"}).status_code == 400
    assert api.patch(f"{DPS}/{dp_id}", json={"disabled": False}).get_json()["status"] == "online"


def test_allowed_hours_and_bandwidth(api_as, node):
    """Are "22-6" hours and a bandwidth cap stored, and "25-3" or a tiny cap refused with 400?"""
    api = api_as("admin")
    dp_id = local_dp(api, node).get_json()["id"]
    ok = api.patch(f"{DPS}/{dp_id}", json={"allowed_hours": "22-6", "bandwidth_limit": 10_000_000})
    assert ok.status_code == 200
    assert (ok.get_json()["allowed_hours"], ok.get_json()["bandwidth_limit"]) == ("22-06", 10_000_000)
    for changes, message in [({"allowed_hours": "25-3"}, "allowed hours must look like 22-6"),
                             ({"allowed_hours": "6-6"}, "must not start and end at the same hour"),
                             ({"bandwidth_limit": 1000}, "65536 or more")]:
        status, code, text = error_of(api.patch(f"{DPS}/{dp_id}", json=changes))
        assert status == 400 and message in text
    dp = db.session.get(DistributionPoint, dp_id)
    assert (dp.allowed_hours, dp.bandwidth_limit) == ("22-06", 10_000_000)
    cleared = api.patch(f"{DPS}/{dp_id}", json={"allowed_hours": "", "bandwidth_limit": None})
    assert (cleared.get_json()["allowed_hours"], cleared.get_json()["bandwidth_limit"]) == (None, None)


def test_changing_the_key_is_tested_first(api_as, node):
    """Is a new key the node refuses rejected, keeping the old one, and an unknown field a 400?"""
    api = api_as("admin")
    dp_id = local_dp(api, node).get_json()["id"]
    before = db.session.get(DistributionPoint, dp_id).secret
    response = api.patch(f"{DPS}/{dp_id}", json={"key": "another-key-0123456789"})
    assert error_of(response)[:2] == (400, "dp_error")
    assert db.session.get(DistributionPoint, dp_id).secret == before
    assert api.patch(f"{DPS}/{dp_id}", json={"root": "/etc"}).status_code == 400


def test_delete_forgets_the_dp_but_leaves_its_files(api_as, node, work):
    """Does DELETE forget the DP and its inventory, while the node keeps every file?"""
    write_file(node.root, "Images/Branch.wim", b"branch")
    api = api_as("admin")
    dp_id = local_dp(api, node).get_json()["id"]
    work()
    assert api.get(f"{DPS}/{dp_id}/content").get_json()["items"]
    assert api.delete(f"{DPS}/{dp_id}").status_code == 204
    assert api.get(f"{DPS}/{dp_id}").status_code == 404
    assert db.session.get(DistributionPoint, dp_id) is None
    assert [i["kind"] for i in api.get(DPS).get_json()["items"]] == ["central"]
    with open(node.file("Images/Branch.wim"), "rb") as fh:
        assert fh.read() == b"branch"
    assert os.path.isdir(node.file("Media"))
    assert api.delete(f"{DPS}/{dp_id}").status_code == 404


def test_delete_takes_the_dp_out_of_groups_and_boundaries(api_as, node, central):
    """Does forgetting a DP take it out of every group's preference and fallbacks, and drop its
    boundaries, so that selection never tries a DP that is gone?"""
    api = api_as("admin")
    dp_id = local_dp(api, node).get_json()["id"]
    group = api.post("/api/v1/groups", json={"name": "Seattle office",
                                             "fallback_dp_ids": [dp_id, central.id]})
    assert group.status_code == 201, group.get_json()
    assert api.post("/api/v1/boundaries", json={"name": "Seattle LAN", "cidr": "10.2.0.0/16",
                                                "dp_id": dp_id}).status_code == 201
    assert api.delete(f"{DPS}/{dp_id}").status_code == 204
    after = api.get(f"/api/v1/groups/{group.get_json()['id']}").get_json()
    assert after["fallback_dp_ids"] == [central.id]
    assert api.get("/api/v1/boundaries").get_json()["items"] == []


def test_central_cannot_be_deleted(api_as, central):
    """Is deleting the central DP a 409 that leaves it in place?"""
    status, code, message = error_of(api_as("admin").delete(f"{DPS}/{central.id}"))
    assert (status, code) == (409, "conflict") and "central" in message
    assert dps.central_dp().id == central.id
