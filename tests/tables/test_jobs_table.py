"""The Jobs list: sorted, searched and paged; bulk cancel and retry of failed copies."""
import re

from portal.extensions import db
from portal.models import AuditEvent, Job
from tests.factories import add_copy_job, add_dp
from tests.helpers import fresh


def job_order(html: str) -> list[str]:
    return re.findall(r'<tr class="job-row" data-job="([^"]+)"', html)


def test_jobs_sort_search_and_page(login_as):
    """Can the Jobs list be sorted by a column both ways, searched case-insensitively and paged
    with counts, as a page and as the fragment the search box asks for?"""
    seattle, boise = add_dp("Seattle"), add_dp("Boise")
    a = add_copy_job(seattle, state="failed", key="Images/Alpha.wim")
    b = add_copy_job(boise, state="succeeded", key="Images/beta.wim")
    console = login_as("viewer")
    by_asset = console.get("/jobs/?sort=asset").get_data(as_text=True)
    assert job_order(by_asset) == [a.id, b.id] and 'aria-sort="ascending"' in by_asset
    desc = console.get("/jobs/?sort=asset&dir=desc").get_data(as_text=True)
    assert job_order(desc) == [b.id, a.id]
    assert job_order(console.get("/jobs/?sort=dp").get_data(as_text=True)) == [b.id, a.id]
    found = console.get("/jobs/?q=SEATTLE", hx=True).get_data(as_text=True)
    assert found.startswith('<div id="job-list"') and job_order(found) == [a.id]
    assert job_order(console.get("/jobs/?q=BETA&state=failed").get_data(as_text=True)) == []
    assert "2 of 2" in by_asset
    for bad in ("?sort=nope&dir=up&page=-1", "?page=99999999999999999999", "?q=%25_"):
        assert console.get(f"/jobs/{bad}").status_code == 200


def test_jobs_pager_counts(login_as):
    """Does a long list say "1–50 of 51" and link to the next page, which keeps the filter?"""
    seattle = add_dp("Seattle")
    for _ in range(51):
        add_copy_job(seattle, state="failed")
    html = login_as("viewer").get("/jobs/?state=failed").get_data(as_text=True)
    assert "1–50 of 51" in html and 'href="/jobs/?state=failed&amp;page=2"' in html
    last = login_as("viewer").get("/jobs/?state=failed&page=2").get_data(as_text=True)
    assert "51–51 of 51" in last and len(job_order(last)) == 1


def test_select_all_and_bulk_buttons_only_for_roles_that_may(login_as):
    """Do technicians get the select-all box and the bulk buttons, and viewers neither?"""
    add_copy_job(add_dp("Seattle"), state="queued")
    tech = login_as("technician").get("/jobs/").get_data(as_text=True)
    assert 'data-select-all="job_id"' in tech and "Cancel ticked" in tech
    viewer = login_as("viewer").get("/jobs/").get_data(as_text=True)
    assert "data-select-all" not in viewer and "Cancel ticked" not in viewer


def test_bulk_cancel_counts_what_had_already_finished(login_as):
    """Does bulk cancel cancel the queued and running jobs, one audit entry each, and say how
    many had already finished or were not found, keeping the list's arguments?"""
    seattle = add_dp("Seattle")
    queued = add_copy_job(seattle, state="queued")
    running = add_copy_job(seattle, state="running")
    done = add_copy_job(seattle, state="succeeded")
    console = login_as("technician")
    response = console.post("/jobs/cancel", {
        "job_id": [queued.id, running.id, done.id, "no-such-job"], "next": "/jobs/?sort=kind"})
    assert response.status_code == 303 and response.headers["Location"] == "/jobs/?sort=kind"
    assert fresh(queued.id).state == "cancelled" and fresh(running.id).cancel_requested
    assert fresh(done.id).state == "succeeded"
    page = console.get("/jobs/?sort=kind").get_data(as_text=True)
    assert "2 jobs cancelled, 1 had already finished, 1 was not found" in page
    audits = db.session.query(AuditEvent).filter(AuditEvent.action == "job.copy.cancel").all()
    assert sorted(a.target for a in audits) == sorted([queued.id, running.id])


def test_bulk_cancel_refusals(login_as):
    """Is bulk cancel a 403 for a viewer, a flash when nothing is ticked, a 400 without CSRF,
    and never a way to leave the console (next is checked)?"""
    job = add_copy_job(add_dp("Seattle"), state="queued")
    assert login_as("viewer").post("/jobs/cancel", {"job_id": job.id}).status_code == 403
    assert fresh(job.id).state == "queued"
    console = login_as("admin")
    nothing = console.post("/jobs/cancel", {"next": "https://evil.example/"})
    assert nothing.status_code == 303 and nothing.headers["Location"] == "/jobs/"
    assert "tick the jobs to cancel first" in console.get("/jobs/").get_data(as_text=True)
    no_csrf = console.client.post("/jobs/cancel", data={"job_id": job.id})
    assert no_csrf.status_code == 400 and fresh(job.id).state == "queued"


def test_bulk_retry_requeues_failed_copies(login_as, central_asset):
    """Does retry start a new copy of each failed copy's asset to its DP, and skip jobs that are
    not failed copies, pairs already copying again, and assets central no longer has?"""
    seattle = add_dp("Seattle")
    central_asset("Images/Win11.wim")
    failed = add_copy_job(seattle, state="failed", key="Images/Win11.wim")
    gone = add_copy_job(seattle, state="failed", key="Images/Gone.wim")
    ok = add_copy_job(seattle, state="succeeded", key="Images/Win11.wim")
    console = login_as("technician")
    console.post("/jobs/retry", {"job_id": [failed.id, gone.id, ok.id]})
    page = console.get("/jobs/").get_data(as_text=True)
    assert "1 copy started again, 1 could not start, 1 was not a failed copy" in page
    assert "Images/Gone.wim is not at central" in page
    again = db.session.query(Job).filter(Job.state == "queued", Job.dp_id == seattle.id).all()
    assert [j.asset_key for j in again] == ["Images/Win11.wim"]
    console.post("/jobs/retry", {"job_id": [failed.id]})
    assert "was already being copied again" in console.get("/jobs/").get_data(as_text=True)
    assert db.session.query(Job).filter(Job.state == "queued").count() == 1
    assert login_as("viewer").post("/jobs/retry", {"job_id": [failed.id]}).status_code == 403
