"""A running job's throughput as its worker measures it (jobs.bytes_per_second): over the last
seconds of byte counts, unknown until there is a span to tell, forgotten when a run ends."""
from portal.extensions import db
from portal.models import Job
from portal.services import job_runs
from tests.factories import add_copy_job, add_dp

MB = 1_000_000


def test_progress_stores_the_recent_rate_and_the_api_shows_it(app, api_as, monkeypatch):
    """Does Progress store no rate for a first count, the rate over the window once time has
    passed, a lower one when the copy stalls, and the API carry it; and does a new claim clear
    it?"""
    now = [100.0]
    monkeypatch.setattr(job_runs.time, "monotonic", lambda: now[0])
    job = add_copy_job(add_dp("Seattle"), state="queued", bytes_total=100 * MB)
    run_id = job_runs.claim(job.id)
    progress = job_runs.Progress(job.id, run_id)

    def rate():
        db.session.expire_all()
        return db.session.get(Job, job.id).bytes_per_second

    progress.update(bytes_done=0, force=True)
    assert rate() is None  # one count: nothing to tell yet
    now[0] += 2
    progress.update(bytes_done=20 * MB, force=True)
    assert rate() == 10 * MB
    assert api_as("viewer").get(f"/api/v1/jobs/{job.id}").get_json()["bytes_per_second"] == 10 * MB
    now[0] += 2
    progress.update(force=True)  # no new bytes for two seconds: the rate falls
    assert rate() == 5 * MB
    db.session.query(Job).filter_by(id=job.id).update({"state": "queued"})
    db.session.commit()
    job_runs.claim(job.id)
    assert rate() is None
