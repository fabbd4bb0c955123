"""Distribution points, rescan, content and assets over the API, with per-role visibility."""
from portal.extensions import db
from portal.models import DistributionPoint, Job
from tests.factories import write_file


def test_list_and_get_distribution_points(api_as, central):
    """Does the DP list carry the fields of SPEC section 5 for the central DP?"""
    api = api_as("viewer")
    items = api.get("/api/v1/distribution-points").get_json()["items"]
    assert len(items) == 1
    dp = items[0]
    assert {"id", "name", "kind", "provider", "site", "url", "status", "free_bytes",
            "last_scan_at", "counts"} <= set(dp)
    assert (dp["kind"], dp["name"], dp["site"]) == ("central", "Central", "HQ")
    one = api.get(f"/api/v1/distribution-points/{central.id}")
    assert one.status_code == 200 and one.get_json()["id"] == central.id
    assert api.get("/api/v1/distribution-points/9999").status_code == 404


def test_rescan_then_content_and_assets(api_as, central, work):
    """Does POST rescan give 202 {job}, a second ask the same job, and content the assets?"""
    write_file(central.root, "Images/Win11.wim", b"w" * 2048)
    write_file(central.root, "Answer Files/unattend.xml", b"<x/>")
    api = api_as("technician")
    first = api.post(f"/api/v1/distribution-points/{central.id}/rescan")
    assert first.status_code == 202
    job = first.get_json()["job"]
    assert job["state"] == "queued" and job["kind"] == "rescan"
    again = api.post(f"/api/v1/distribution-points/{central.id}/rescan")
    assert again.status_code == 202 and again.get_json()["job"]["id"] == job["id"]
    work()
    done = api.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert (done["state"], done["bytes_done"], done["bytes_total"], done["error"]) == (
        "succeeded", 2052, 2052, None)
    images = api.get(f"/api/v1/distribution-points/{central.id}/content?library=Images").get_json()
    assert [(i["key"], i["size"], i["status"]) for i in images["items"]] == [
        ("Images/Win11.wim", 2048, "current")]
    assert len(images["items"][0]["digest"]) == 64
    everything = api.get(f"/api/v1/distribution-points/{central.id}/content").get_json()["items"]
    assert {i["library"] for i in everything} == {"Images", "Answer Files"}
    assets = api.get("/api/v1/assets").get_json()["items"]
    assert {a["key"]: a["status_by_dp"] for a in assets} == {
        "Answer Files/unattend.xml": {str(central.id): "current"},
        "Images/Win11.wim": {str(central.id): "current"},
    }
    listed = api.get("/api/v1/distribution-points").get_json()["items"][0]
    assert listed["counts"] == {"current": 2} and listed["last_scan_at"]


def test_unknown_library_is_a_400(api_as, central):
    """Is content asked for in a library that does not exist a 400 naming it?"""
    api = api_as("viewer")
    response = api.get(f"/api/v1/distribution-points/{central.id}/content?library=Games")
    assert response.status_code == 400
    assert "unknown library 'Games'" in response.get_json()["error"]["message"]


def test_viewer_cannot_rescan(api_as, central):
    """Is a viewer's rescan a 403 with no job created?"""
    api = api_as("viewer")
    response = api.post(f"/api/v1/distribution-points/{central.id}/rescan")
    assert response.status_code == 403
    assert db.session.query(Job).count() == 0


def test_viewer_scoped_to_a_site_sees_only_its_dps(app, api_as, central):
    """Does a viewer scoped to Seattle see neither HQ's central DP nor its content?"""
    db.session.add(DistributionPoint(name="Seattle", kind="local", site="Seattle",
                                     url="https://seattle.example:8443"))
    db.session.commit()
    api = api_as("viewer", sites=["Seattle"])
    names = [dp["name"] for dp in api.get("/api/v1/distribution-points").get_json()["items"]]
    assert names == ["Seattle"]
    assert api.get(f"/api/v1/distribution-points/{central.id}").status_code == 404
    assert api.get(f"/api/v1/distribution-points/{central.id}/content").status_code == 404
