"""Job rows: the database row is the truth, RQ only executes.

A job is created as a `queued` row, then handed to RQ under an id of its own attempt
(`enqueue`); a second request for the same work gets the active row back (its dedup key).
Cancelling writes the row. What happens once a worker picks the attempt up is in `job_runs`
(claim, progress, heartbeat, outcome); handing back jobs no live worker holds is in
`job_recovery`.
"""
import logging
import uuid
from datetime import timedelta

from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal.core.errors import Conflict, DepotError, NotFound
from portal.extensions import db, get_queue, get_redis
from portal.models import DistributionPoint, Job, utcnow
from portal.models.jobs import ACTIVE_STATES, FINISHED_STATES
from portal.services import audit
from portal.services.actors import Actor

log = logging.getLogger(__name__)

# kind -> (queue, the RQ entry point as a dotted path a plain `rq worker` can import)
JOB_FUNCS = {
    "rescan": ("rescans", "portal.jobs.rescan.rescan"),
    "copy": ("copies", "portal.jobs.copy.copy"),
    "verify": ("rescans", "portal.jobs.verify.verify"),
    "delete": ("copies", "portal.jobs.copy.delete"),
}
JOB_TIMEOUT = 24 * 3600  # liveness comes from our heartbeat, not from RQ's timeout
MAX_WARNINGS = 200  # a row keeps the latest warnings of its runs, up to this many


def get_job(job_id: str) -> Job:
    """The job row, or NotFound."""
    job = db.session.get(Job, job_id) if isinstance(job_id, str) else None
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def dp_of(job: Job) -> DistributionPoint:
    """The DP a job works on; a clear error if it was forgotten since the job was queued."""
    dp = db.session.get(DistributionPoint, job.dp_id) if job.dp_id else None
    if dp is None:
        raise DepotError(f"the distribution point of this {job.kind} no longer exists")
    return dp


def active_job(dedup_key: str) -> Job | None:
    """The queued or running job holding this dedup key, if any."""
    return db.session.scalars(
        select(Job).where(Job.dedup_key == dedup_key, Job.state.in_(ACTIVE_STATES))
    ).first()


def start_job(kind: str, actor: Actor, *, dp_id: int | None = None, asset_key: str | None = None,
              dedup_key: str | None = None) -> tuple[Job, bool]:
    """Create and enqueue a job, or return the active one with the same dedup key:
    (job, created)."""
    if dedup_key and (existing := active_job(dedup_key)):
        return existing, False
    queue_name, _ = JOB_FUNCS[kind]
    job_id = str(uuid.uuid4())
    job = Job(id=job_id, kind=kind, queue=queue_name, dp_id=dp_id, asset_key=asset_key,
              dedup_key=dedup_key, state="queued", attempts=1, rq_job_id=f"{job_id}-1",
              requested_by_id=actor.user_id, queued_at=utcnow(), warnings=[])
    db.session.add(job)
    audit.record(actor, f"job.{kind}.start", target=job_id, dp_id=dp_id, asset_key=asset_key)
    try:
        db.session.commit()
    except IntegrityError:
        # Another request created the same job between our look and our insert.
        db.session.rollback()
        existing = active_job(dedup_key) if dedup_key else None
        if existing is None:
            raise
        return existing, False
    enqueue(job)
    return job, True


def enqueue(job: Job, rq_job_id: str | None = None, delay: float = 0) -> bool:
    """Hand an attempt of the job (`rq_job_id`, else its current one) to RQ, now or after `delay`
    seconds (RQ's scheduler, in workers started --with-scheduler); False if Redis is down."""
    _, func = JOB_FUNCS[job.kind]
    options = dict(job_id=rq_job_id or job.rq_job_id, job_timeout=JOB_TIMEOUT,
                   result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
                   description=f"depot {job.kind} {job.id}")
    try:
        queue = get_queue(job.queue)
        if delay > 0:
            queue.enqueue_in(timedelta(seconds=delay), func, job.id, **options)
        else:
            queue.enqueue(func, job.id, **options)
        return True
    except RedisError as exc:
        log.warning("could not enqueue job %s (%s); recovery will retry", job.id, exc)
        return False


def cancel_job(job_id: str, actor: Actor) -> Job:
    """Cancel a queued job at once; ask a running one to stop (it does within seconds)."""
    job = get_job(job_id)
    if job.state in FINISHED_STATES:
        raise Conflict(f"job {job.id} has already finished ({job.state})")
    audit.record(actor, f"job.{job.kind}.cancel", target=job.id, dp_id=job.dp_id)
    changed = db.session.execute(
        update(Job).where(Job.id == job.id, Job.state == "queued").values(
            state="cancelled", finished_at=utcnow(), error=f"cancelled by {actor.label}")
    ).rowcount
    if not changed:
        db.session.execute(update(Job).where(Job.id == job.id, Job.state == "running")
                           .values(cancel_requested=True))
    db.session.commit()
    if changed and job.rq_job_id:
        try:
            RQJob.fetch(job.rq_job_id, connection=get_redis()).cancel()
        except (NoSuchJobError, RedisError, Exception) as exc:  # the row already says cancelled
            log.info("RQ job %s not cancelled in Redis: %s", job.rq_job_id, exc)
    db.session.refresh(job)
    return job
