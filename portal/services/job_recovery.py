"""The recovery sweep: hand back to RQ every job the database says is queued or running but
that no live worker holds (a killed worker, a Redis that restarted empty).

It runs every few seconds (`rq cron portal.jobs.cron`), at start (`launcher`) and on demand
(`flask jobs recover`), one sweep at a time under a Redis lock. A job past
DEPOT_JOB_MAX_ATTEMPTS fails instead; every write is conditional on the row being as lost as the
sweep saw it, so a worker's claim in between always wins.
"""
import logging
from datetime import timedelta, timezone

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from sqlalchemy import ColumnElement, or_, select, update

from portal.extensions import db, get_redis
from portal.models import Job, utcnow
from portal.services.job_runs import notify_finished, stale_cutoff
from portal.services.jobs import MAX_WARNINGS, enqueue

log = logging.getLogger(__name__)
RQ_WAITING = {"queued", "deferred", "scheduled"}


def _rq_holds(job: Job, cutoff) -> bool:
    """True when RQ still has this attempt waiting, or a worker took it only just now."""
    if not job.rq_job_id:
        return False
    try:
        rq_job = RQJob.fetch(job.rq_job_id, connection=get_redis())
        status = rq_job.get_status(refresh=True)
    except (NoSuchJobError, ValueError):  # gone, or an id RQ would not accept
        return False
    status = str(getattr(status, "value", status))
    if status == "started":
        # Taken by a worker that has not claimed the row yet: alive only if the worker took it
        # moments ago. When RQ took it counts, not when it was queued: a job that waited in a
        # backlog of copies longer than the cutoff is still being claimed right now.
        taken = rq_job.started_at or job.queued_at
        if taken is not None and taken.tzinfo is not None:  # RQ's times are aware, ours naive UTC
            taken = taken.astimezone(timezone.utc).replace(tzinfo=None)
        return taken is not None and taken >= cutoff
    return status in RQ_WAITING


def _still_lost(job: Job, cutoff) -> ColumnElement[bool]:
    """The WHERE clause "this row is as lost as the sweep saw it". A worker's `claim` sets the state
    to running with a fresh heartbeat, so an update under this clause cannot undo a claim that
    slipped in between the sweep's read and its write."""
    if job.state == "running":
        alive = (Job.heartbeat_at.is_(None)) | (Job.heartbeat_at < cutoff)
    else:
        alive = Job.state == "queued"
    return (Job.id == job.id) & (Job.state == job.state) & (Job.attempts == job.attempts) & alive


def _settle(job: Job, still_lost, outcome: str, **values) -> str:
    """Write `values` to a lost job's row if it is still lost; else say a worker took it."""
    changed = db.session.execute(update(Job).where(still_lost).values(**values)).rowcount
    db.session.commit()
    db.session.refresh(job)
    if not changed:
        return "taken by a worker"
    if outcome == "failed":
        notify_finished(job)
        db.session.commit()
    return outcome


def _requeue(job: Job, reason: str, cutoff) -> str:
    """Give the job a new attempt in RQ, or fail it when it has had enough attempts."""
    still_lost = _still_lost(job, cutoff)  # as the sweep saw the row
    if job.attempts >= current_app.config["DEPOT_JOB_MAX_ATTEMPTS"]:
        return _settle(job, still_lost, "failed", state="failed", finished_at=utcnow(),
                       error=f"gave up after {job.attempts} attempts: {reason}")
    attempt = job.attempts + 1
    # RQ first: if Redis is down the row stays as it was and the next sweep tries again. If a
    # worker claims the row meanwhile, the update below changes nothing and the new attempt,
    # finding the row claimed, does nothing.
    if not enqueue(job, f"{job.id}-{attempt}"):
        return "deferred"
    outcome = _settle(
        job, still_lost, "requeued", state="queued", attempts=attempt,
        rq_job_id=f"{job.id}-{attempt}", queued_at=utcnow(), cancel_requested=False,
        warnings=[*(job.warnings or []), f"requeued (attempt {attempt}): {reason}"][-MAX_WARNINGS:])
    if outcome == "requeued":
        log.warning("requeued job %s (attempt %s): %s", job.id, attempt, reason)
    return outcome


def recover_lost_jobs() -> dict[str, str]:
    """Requeue every job the database says is queued or running but that no live worker holds."""
    redis = get_redis()
    lock = redis.lock("depot:recover-lost-jobs", timeout=120, blocking=False)
    if not lock.acquire():
        return {}
    outcome: dict[str, str] = {}
    try:
        cutoff = stale_cutoff()
        grace = utcnow() - timedelta(seconds=10)
        running = db.session.scalars(select(Job).where(
            Job.state == "running",
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))).all()
        for job in running:
            if job.cancel_requested:
                outcome[job.id] = _settle(job, _still_lost(job, cutoff), "cancelled",
                                          state="cancelled", error="cancelled",
                                          finished_at=utcnow())
            else:
                outcome[job.id] = _requeue(job, "its worker stopped answering", cutoff)
        queued = db.session.scalars(select(Job).where(
            Job.state == "queued", or_(Job.queued_at.is_(None), Job.queued_at < grace))).all()
        for job in queued:
            if not _rq_holds(job, cutoff):
                outcome[job.id] = _requeue(job, "the queue had lost it", cutoff)
    finally:
        try:
            lock.release()
        except Exception:
            pass
    return outcome
