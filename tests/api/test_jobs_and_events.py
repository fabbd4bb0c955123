"""Jobs, notifications and the audit log over the API."""
from portal.extensions import db
from portal.models import AuditEvent, Job
from portal.services import notifications
from tests.factories import add_copy_job, add_dp


def test_job_get_cancel_and_conflict(api_as, central):
    """Can a technician cancel a queued job, and is a second cancel a 409?"""
    api = api_as("technician")
    job_id = api.post(f"/api/v1/distribution-points/{central.id}/rescan").get_json()["job"]["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    body = response.get_json()
    assert {"id", "kind", "state", "bytes_done", "bytes_total", "error"} <= set(body)
    assert body["state"] == "cancelled"
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 409
    assert api.get("/api/v1/jobs/not-a-job").status_code == 404
    listed = api.get("/api/v1/jobs?state=cancelled").get_json()
    assert [j["id"] for j in listed["items"]] == [job_id] and listed["total"] == 1
    assert api.get("/api/v1/jobs?state=bogus").status_code == 400
    assert db.session.query(AuditEvent).filter_by(action="job.rescan.cancel").count() == 1


def test_a_copy_job_says_what_crossed_the_network(api_as, central):
    """Do a copy job's answer and the job list carry bytes_sent beside bytes_done and
    bytes_total, and an older job's null?"""
    node = add_dp("Seattle")
    job = add_copy_job(node, bytes_total=5 * 2 ** 30, bytes_done=2 * 2 ** 30,
                       bytes_sent=61 * 2 ** 20)
    older = add_copy_job(node, key="Images/Win10.wim", bytes_total=10, bytes_done=4)
    api = api_as("viewer")
    body = api.get(f"/api/v1/jobs/{job.id}").get_json()
    assert (body["kind"], body["bytes_total"], body["bytes_done"], body["bytes_sent"]) == (
        "copy", 5 * 2 ** 30, 2 * 2 ** 30, 61 * 2 ** 20)
    assert api.get(f"/api/v1/jobs/{older.id}").get_json()["bytes_sent"] is None
    listed = {j["id"]: j["bytes_sent"] for j in api.get("/api/v1/jobs?kind=copy").get_json()["items"]}
    assert listed == {job.id: 61 * 2 ** 20, older.id: None}


def test_viewer_cannot_cancel(api_as, central):
    """Is a viewer's cancel a 403, leaving the job queued?"""
    tech = api_as("technician")
    job_id = tech.post(f"/api/v1/distribution-points/{central.id}/rescan").get_json()["job"]["id"]
    viewer = api_as("viewer")
    assert viewer.get(f"/api/v1/jobs/{job_id}").status_code == 200
    assert viewer.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    assert db.session.get(Job, job_id).state == "queued"


def test_notifications_newest_first_and_mark_read(api_as, central, work):
    """Does a finished rescan notify one who asked for successes, newest first, with unread
    counts and mark-as-read?"""
    api = api_as("admin")
    notifications.choose_successes(api.user, True)
    for _ in range(2):
        api.post(f"/api/v1/distribution-points/{central.id}/rescan")
        work()
    body = api.get("/api/v1/notifications").get_json()
    assert body["total"] == 2 and body["unread"] == 2
    first, second = body["items"]
    assert first["id"] > second["id"] and first["kind"] == "rescan.succeeded"
    assert "Rescan of Central finished" in first["message"]
    assert api.post(f"/api/v1/notifications/{second['id']}/read").get_json() == {"changed": 1}
    assert api.get("/api/v1/notifications?unread=1").get_json()["total"] == 1
    assert api.post("/api/v1/notifications/read-all").get_json() == {"changed": 1}
    assert api.get("/api/v1/notifications").get_json()["unread"] == 0


def test_notifications_are_per_user(api_as, central, work):
    """Does one person's mark-as-read leave another's unread?"""
    alice, bob = api_as("admin"), api_as("technician")
    for person in (alice, bob):
        notifications.choose_successes(person.user, True)
    alice.post(f"/api/v1/distribution-points/{central.id}/rescan")
    work()
    alice.post("/api/v1/notifications/read-all")
    assert bob.get("/api/v1/notifications").get_json()["unread"] == 1


def test_audit_log_filters_and_pages(api_as, central):
    """Is the audit log admins-only, newest first, filterable and paginated?"""
    admin = api_as("admin")
    for n in range(3):
        admin.post("/api/v1/users", json={"email": f"u{n}@example.com", "password": "plum kettle orbit",
                                          "role": "viewer"})
    admin.post(f"/api/v1/distribution-points/{central.id}/rescan")
    body = admin.get(f"/api/v1/audit?action=user.&actor={admin.user.email}&per_page=2").get_json()
    assert body["total"] == 3 and len(body["items"]) == 2 and body["next_page"] == 2
    assert [e["target"] for e in body["items"]] == ["u2@example.com", "u1@example.com"]
    item = body["items"][0]
    assert (item["actor"], item["via"], item["ip"]) == (admin.user.email, "api", "127.0.0.1")
    page2 = admin.get(f"/api/v1/audit?action=user.&actor={admin.user.email}&per_page=2&page=2").get_json()
    assert [e["target"] for e in page2["items"]] == ["u0@example.com"] and page2["next_page"] is None
    assert admin.get("/api/v1/audit?page=0").status_code == 400
    assert admin.get("/api/v1/audit?per_page=abc").status_code == 400
    assert api_as("technician").get("/api/v1/audit").status_code == 403


HUGE = str(2 ** 70)


def test_ids_and_pages_past_what_the_database_holds_are_no_500(api_as, login_as, central):
    """Is an id or a page number too big for the database a 404 or a 400 with a message, in the
    API and in the console, rather than the driver's overflow as a 500?"""
    api = api_as("admin")
    for path in (f"/api/v1/devices/{HUGE}", f"/api/v1/deployments/{HUGE}",
                 f"/api/v1/groups/{HUGE}", f"/api/v1/distribution-points/{HUGE}"):
        assert api.get(path).status_code == 404, path
    for path in ("/api/v1/jobs", "/api/v1/devices", "/api/v1/deployments", "/api/v1/audit"):
        response = api.get(f"{path}?page={HUGE}")
        assert response.status_code == 400, path
        assert "page must be between 1 and" in response.get_json()["error"]["message"]
    console = login_as("admin")
    for path in (f"/deployments/{HUGE}", f"/computers/{HUGE}"):
        assert console.get(path).status_code == 404, path
    for path in ("/deployments/", "/computers/", "/settings/audit"):
        assert console.get(f"{path}?page={HUGE}").status_code == 200, path
