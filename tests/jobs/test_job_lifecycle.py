"""Jobs on real RQ workers: dedup, cancel, and recovery of jobs that no live worker holds."""
import os
from datetime import datetime, timezone

import pytest
from rq.job import Job as RQJob

from portal.core.errors import Conflict
from portal.extensions import db, get_redis
from portal.jobs.rescan import rescan as rescan_entry
from portal.models import Job
from portal.services import distribution_points as dps
from portal.services import job_recovery, job_runs, jobs
from tests.factories import write_file
from tests.helpers import fresh, wait_for

MB = 1024 * 1024


@pytest.fixture
def big_tree(central):
    """Enough bytes that a rate-limited scan runs for a while."""
    for i in range(4):
        write_file(central.root, f"Images/big-{i}.wim", os.urandom(2 * MB))
    return central


def test_rescan_asked_twice_is_one_job(central, admin, work):
    """Does a second rescan request while one is queued return the same job?"""
    first, created = dps.request_rescan(central, admin)
    second, created_again = dps.request_rescan(central, admin)
    assert created and not created_again and first.id == second.id
    assert db.session.query(Job).count() == 1
    work()
    assert fresh(first.id).state == "succeeded"
    third, created = dps.request_rescan(central, admin)
    assert created and third.id != first.id


def test_a_job_run_twice_does_the_work_once(central, admin, work):
    """Is the job code safe to run twice: the second run finds the row finished and skips?"""
    job, _ = dps.request_rescan(central, admin)
    work()
    assert fresh(job.id).state == "succeeded"
    assert rescan_entry(job.id) == "skipped"
    assert fresh(job.id).state == "succeeded"


def test_cancel_a_queued_job(central, admin, work):
    """Is a queued job cancelled at once, never run, and cancel of a finished one refused?"""
    job, _ = dps.request_rescan(central, admin)
    jobs.cancel_job(job.id, admin)
    assert fresh(job.id).state == "cancelled"
    work()
    assert fresh(job.id).state == "cancelled"
    assert fresh(job.id).started_at is None
    with pytest.raises(Conflict, match="already finished"):
        jobs.cancel_job(job.id, admin)


@pytest.fixture
def config_overrides():
    return {"DEPOT_SCAN_RATE_LIMIT": 1 * MB}


@pytest.mark.slow
def test_cancel_a_running_rescan_stops_within_seconds(big_tree, admin, start_worker):
    """Does cancelling a running rescan stop it within seconds on a real worker process?"""
    job, _ = dps.request_rescan(big_tree, admin)
    start_worker()
    wait_for(lambda: fresh(job.id).bytes_done > 0, message="the scan to start hashing")
    jobs.cancel_job(job.id, admin)
    import time
    asked = time.monotonic()
    wait_for(lambda: fresh(job.id).state == "cancelled", timeout=60, message="cancellation")
    assert time.monotonic() - asked < 5
    assert fresh(job.id).bytes_done < fresh(job.id).bytes_total


@pytest.mark.slow
def test_killed_worker_job_is_recovered_and_finishes(big_tree, admin, start_worker, app):
    """After the worker is SIGKILLed mid-scan, is the job requeued and finished by another?"""
    job, _ = dps.request_rescan(big_tree, admin)
    worker = start_worker()
    wait_for(lambda: fresh(job.id).bytes_done > 0, message="the scan to start hashing")
    worker.kill()
    assert fresh(job.id).state == "running"
    # The heartbeat is still fresh: not yet presumed dead.
    assert job_recovery.recover_lost_jobs() == {}
    wait_for(lambda: job_recovery.recover_lost_jobs().get(job.id) == "requeued",
             timeout=60, message="the job to be presumed lost")
    requeued = fresh(job.id)
    assert (requeued.state, requeued.attempts, requeued.rq_job_id) == ("queued", 2, f"{job.id}-2")
    start_worker(DEPOT_SCAN_RATE_LIMIT="0")  # the second attempt need not be slow
    wait_for(lambda: fresh(job.id).state == "succeeded", timeout=60, message="the second attempt")
    done = fresh(job.id)
    assert "4 assets" in done.summary
    assert any("worker stopped answering" in w for w in done.warnings)


def test_job_lost_by_an_emptied_redis_is_requeued(central, admin, work):
    """When Redis restarts empty, is a queued job handed to RQ again and run?"""
    job, _ = dps.request_rescan(central, admin)
    get_redis().flushdb()
    db.session.query(Job).filter_by(id=job.id).update(
        {"queued_at": fresh(job.id).queued_at.replace(year=2000)})
    db.session.commit()
    assert job_recovery.recover_lost_jobs() == {job.id: "requeued"}
    assert RQJob.fetch(f"{job.id}-2", connection=get_redis()) is not None
    work()
    assert fresh(job.id).state == "succeeded"


def test_recovery_leaves_waiting_jobs_alone(central, admin):
    """Is a job that RQ still holds in its queue left as it is?"""
    job, _ = dps.request_rescan(central, admin)
    db.session.query(Job).filter_by(id=job.id).update(
        {"queued_at": fresh(job.id).queued_at.replace(year=2000)})
    db.session.commit()
    assert job_recovery.recover_lost_jobs() == {}
    assert fresh(job.id).attempts == 1


def test_a_job_that_keeps_dying_fails_with_the_reason(central, admin, app):
    """After the allowed attempts, is a job that keeps losing its worker failed with a reason?"""
    job, _ = dps.request_rescan(central, admin)
    row = fresh(job.id)
    row.state, row.attempts = "running", app.config["DEPOT_JOB_MAX_ATTEMPTS"]
    row.heartbeat_at = row.queued_at.replace(year=2000)
    db.session.commit()
    assert job_recovery.recover_lost_jobs() == {job.id: "failed"}
    failed = fresh(job.id)
    assert failed.state == "failed"
    assert failed.error == f"gave up after {failed.attempts} attempts: its worker stopped answering"


@pytest.mark.parametrize("state", ["queued", "running"])
def test_recovery_does_not_undo_a_claim_made_while_it_requeues(central, admin, monkeypatch, work,
                                                               state):
    """If a worker claims the job between the sweep's look and its write, does the claim stand?"""
    job, _ = dps.request_rescan(central, admin)
    get_redis().flushdb()
    long_ago = fresh(job.id).queued_at.replace(year=2000)
    db.session.query(Job).filter_by(id=job.id).update(
        {"state": state, "queued_at": long_ago, "heartbeat_at": long_ago})
    db.session.commit()
    real_enqueue = job_recovery.enqueue

    def enqueue_while_a_worker_claims(job_row, rq_job_id=None):
        with db.engine.begin() as conn:  # another process's claim, on a connection of its own
            conn.execute(db.update(Job).where(Job.id == job_row.id).values(
                state="running", heartbeat_at=jobs.utcnow()))
        return real_enqueue(job_row, rq_job_id)

    monkeypatch.setattr(job_recovery, "enqueue", enqueue_while_a_worker_claims)
    assert job_recovery.recover_lost_jobs() == {job.id: "taken by a worker"}
    row = fresh(job.id)
    assert (row.state, row.attempts, row.rq_job_id) == ("running", 1, f"{job.id}-1")
    work()  # the extra attempt finds the row claimed and does nothing
    assert fresh(job.id).state == "running"


def test_recovery_runs_in_one_place_at_a_time(central, admin):
    """Does a second sweep while one holds the lock do nothing?"""
    lock = get_redis().lock("depot:recover-lost-jobs", timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert job_recovery.recover_lost_jobs() == {}
    finally:
        lock.release()


def test_recover_job_entry_point_runs_on_a_worker(central, admin, work):
    """Is the scheduled recovery itself a job a plain worker runs?"""
    from portal.extensions import get_queue

    job, _ = dps.request_rescan(central, admin)
    get_redis().delete(f"rq:job:{job.id}-1")
    db.session.query(Job).filter_by(id=job.id).update(
        {"queued_at": fresh(job.id).queued_at.replace(year=2000)})
    db.session.commit()
    get_queue("default").enqueue("portal.jobs.maintenance.recover_lost_jobs")
    work()  # runs the sweep, which requeues the rescan, which the same burst then runs
    assert fresh(job.id).state == "succeeded"


def test_concurrent_rescan_requests_make_one_job(central, admin, monkeypatch):
    """When two requests race past the lookup, does the database's unique index keep one job?"""
    first, _ = dps.request_rescan(central, admin)
    monkeypatch.setattr(jobs, "active_job", lambda key, _real=jobs.active_job: (
        monkeypatch.setattr(jobs, "active_job", _real) or None))
    second, created = dps.request_rescan(central, admin)
    assert not created and second.id == first.id
    assert db.session.query(Job).count() == 1


@pytest.mark.parametrize("taken_over, left", [
    # Recovery requeued the job while this worker was silent.
    ({"state": "queued", "attempts": 2}, ("queued", None, None)),
    # Recovery plus a second worker's claim: running again, under another run.
    ({"run_id": "another-run"}, ("running", None, None)),
])
def test_a_run_whose_job_was_taken_over_writes_nothing_more(central, admin, monkeypatch,
                                                            taken_over, left):
    """If recovery handed the job on while this run was silent (requeued, or already claimed by
    another worker), does this run stop without writing over the new one?"""
    from portal.services import inventory

    job, _ = dps.request_rescan(central, admin)
    real = inventory.rescan

    def stalled_then_taken_over(job_row, progress):
        db.session.query(Job).filter_by(id=job_row.id).update(taken_over)
        db.session.commit()
        wait_for(lambda: progress.cancelled.is_set(), timeout=60, message="the heartbeat to notice")
        progress.check()
        return real(job_row, progress)

    monkeypatch.setattr(inventory, "rescan", stalled_then_taken_over)
    assert job_runs.run_job(job.id, inventory.rescan) == "superseded"
    row = fresh(job.id)
    assert (row.state, row.error, row.finished_at) == left
    if "run_id" in taken_over:
        assert row.run_id == taken_over["run_id"]


@pytest.fixture
def copy_job(central, admin):
    job, _ = jobs.start_job("copy", admin, dp_id=central.id, asset_key="Images/x.wim",
                            dedup_key="copy:test")
    return job


def test_retries_count_up_and_start_again_after_progress(copy_job, app):
    """Does each passing failure count a try, and a run that got somewhere start the count again?"""
    def flaky(job, progress):
        raise job_runs.RetryLater("the DP does not answer")

    def flaky_after_progress(job, progress):
        raise job_runs.RetryLater("the line dropped", progressed=True)

    assert job_runs.run_job(copy_job.id, flaky) == "retrying"
    assert job_runs.run_job(copy_job.id, flaky) == "retrying"
    row = fresh(copy_job.id)
    assert (row.state, row.retries) == ("queued", 2) and row.retry_at is not None
    assert row.warnings[-1].startswith("try 3 in ")
    assert job_runs.run_job(copy_job.id, flaky_after_progress) == "retrying"
    assert fresh(copy_job.id).retries == 1
    app.config["DEPOT_JOB_RETRIES"] = 1
    assert job_runs.run_job(copy_job.id, flaky) == "failed"
    assert fresh(copy_job.id).error == "gave up after 2 tries: the DP does not answer"


def test_waiting_for_allowed_hours_is_not_a_try(copy_job):
    """Is a job waiting for its allowed hours requeued without counting a try?"""
    def outside_hours(job, progress):
        raise job_runs.RetryLater("copies only 22-06 h", delay=3600, counts=False)

    assert job_runs.run_job(copy_job.id, outside_hours) == "retrying"
    row = fresh(copy_job.id)
    assert (row.state, row.retries) == ("queued", 0)
    assert row.warnings[-1] == "waiting 3600 s: copies only 22-06 h"


def _taken_by_rq(job_id, started_at):
    """Mark the job's RQ attempt as a worker marks it when it takes it (before the row's claim)."""
    rq_job = RQJob.fetch(fresh(job_id).rq_job_id, connection=get_redis())
    rq_job.started_at = started_at
    rq_job.save()
    rq_job.set_status("started")


def test_a_job_taken_just_now_after_a_long_wait_is_left_to_its_worker(central, admin):
    """A job that waited in a backlog longer than the stale cutoff and that a worker took only
    now (RQ says started, the row is not claimed yet): is it left alone, not run a second time?"""
    job, _ = dps.request_rescan(central, admin)
    db.session.query(Job).filter_by(id=job.id).update(
        {"queued_at": fresh(job.id).queued_at.replace(year=2000)})
    db.session.commit()
    _taken_by_rq(job.id, datetime.now(timezone.utc))
    assert job_recovery.recover_lost_jobs() == {}
    assert fresh(job.id).attempts == 1


def test_a_job_taken_long_ago_and_never_claimed_is_requeued(central, admin):
    """A job RQ says a worker took long ago, whose row was never claimed (the worker died in
    between): is it handed to RQ again?"""
    job, _ = dps.request_rescan(central, admin)
    db.session.query(Job).filter_by(id=job.id).update(
        {"queued_at": fresh(job.id).queued_at.replace(year=2000)})
    db.session.commit()
    _taken_by_rq(job.id, datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert job_recovery.recover_lost_jobs() == {job.id: "requeued"}
