"""Jobs: the database row is the truth, RQ only executes.

A job is created as a `queued` row, then handed to RQ under an id of its own attempt. A worker
claims the row atomically before working (so a job run twice does the work once), writes a
heartbeat while it runs, and finishes the row. `recover_lost_jobs` hands back to RQ every job
that the database says is queued or running but that no live worker holds.
"""
import logging
import threading
import time
import uuid
from datetime import timedelta
from typing import Callable

from flask import current_app
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from portal.core.errors import Conflict, DepotError, JobCancelled, NeedsAuth, NotFound
from portal.extensions import db, get_queue, get_redis
from portal.models import DistributionPoint, Job, utcnow
from portal.models.jobs import ACTIVE_STATES, FINISHED_STATES
from portal.services import audit, notifications
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
RQ_WAITING = {"queued", "deferred", "scheduled"}
MAX_WARNINGS = 200


class RetryLater(Exception):
    """Raised inside a running job to try again later: after a passing failure (`counts`: one of
    the job's DEPOT_JOB_RETRIES tries, waits growing each time) or to wait for a time window."""

    def __init__(self, reason: str, *, delay: float | None = None, counts: bool = True,
                 progressed: bool = False):
        super().__init__(reason)
        self.reason, self.delay, self.counts = reason, delay, counts
        # This run got somewhere before it failed: the count of tries starts again, so a long
        # copy over a flaky line is not given up while it still moves.
        self.progressed = progressed


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
    """Create and enqueue a job, or return the active one with the same dedup key: (job, created)."""
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
    _enqueue(job)
    return job, True


def _enqueue(job: Job, rq_job_id: str | None = None, delay: float = 0) -> bool:
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


def _stale_cutoff():
    return utcnow() - timedelta(seconds=current_app.config["DEPOT_JOB_STALE_SECONDS"])


def claim(job_id: str) -> str | None:
    """Take the job for this run: queued, or running but silent past the stale limit. Returns the
    run's id, which every later write of this run names, or None if the job is not to be had."""
    now, run_id = utcnow(), uuid.uuid4().hex
    claimed = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested.is_(False), or_(
            Job.state == "queued",
            (Job.state == "running") & (Job.heartbeat_at < _stale_cutoff()),
        ))
        .values(state="running", started_at=now, heartbeat_at=now, error=None, run_id=run_id)
    ).rowcount
    db.session.commit()
    return run_id if claimed else None


def _mine(job_id: str, run_id: str):
    """WHERE the row is still this run's: a run that was taken over writes nothing more."""
    return (Job.id == job_id) & (Job.run_id == run_id)


class Progress:
    """What a running job tells its row: counts, phase and warnings; and whether to stop."""

    def __init__(self, job_id: str, run_id: str, interval: float = 0.5):
        self.job_id, self.run_id = job_id, run_id
        self.interval = interval
        self.cancelled = threading.Event()
        self._values: dict = {}
        self._warnings: list[str] = []
        self._last_write = 0.0

    def update(self, force: bool = False, **values) -> None:
        """Record new values; written to the row at most every `interval` seconds."""
        self._values.update(values)
        if force or time.monotonic() - self._last_write >= self.interval:
            self.flush()

    def warn(self, message: str) -> None:
        """Note something skipped or odd; the job goes on."""
        self._warnings.append(message)

    def flush(self) -> None:
        """Write pending values and warnings to the row (commits the current transaction)."""
        values = dict(self._values, heartbeat_at=utcnow())
        if self._warnings:
            job = db.session.get(Job, self.job_id)
            values["warnings"] = (list(job.warnings or []) + self._warnings)[-MAX_WARNINGS:]
            self._warnings = []
        written = db.session.execute(
            update(Job).where(_mine(self.job_id, self.run_id)).values(**values)).rowcount
        db.session.commit()
        self._last_write = time.monotonic()
        if not written:  # another run has the job now: this one stops
            self.cancelled.set()

    def check(self) -> None:
        """Raise JobCancelled if someone cancelled the job."""
        if self.cancelled.is_set():
            raise JobCancelled()


class _Heartbeat(threading.Thread):
    """Keeps the row's heartbeat fresh and notices cancellation, whatever the job is doing."""

    def __init__(self, app, job_id: str, progress: Progress):
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.app, self.job_id, self.progress = app, job_id, progress
        self.stopping = threading.Event()
        self.beat_every = max(1.0, app.config["DEPOT_JOB_STALE_SECONDS"] / 5)

    def run(self) -> None:
        last_beat = 0.0
        with self.app.app_context():
            while not self.stopping.wait(0.5):
                try:
                    with db.engine.begin() as conn:
                        row = conn.execute(select(Job.state, Job.cancel_requested, Job.run_id)
                                           .where(Job.id == self.job_id)).first()
                        if row is None or row.cancel_requested or row.state != "running" \
                                or row.run_id != self.progress.run_id:
                            self.progress.cancelled.set()
                        if time.monotonic() - last_beat >= self.beat_every:
                            conn.execute(update(Job).where(_mine(self.job_id, self.progress.run_id))
                                         .values(heartbeat_at=utcnow()))
                            last_beat = time.monotonic()
                except Exception:  # a hiccup of the database must not kill the job
                    log.exception("heartbeat of job %s failed", self.job_id)
            db.session.remove()


def run_job(job_id: str, work: Callable[[Job, Progress], str | None]) -> str:
    """Claim the job, run `work(job, progress)` with a heartbeat, and record how it ended."""
    run_id = claim(job_id)
    if run_id is None:
        log.info("job %s is finished, cancelled or held by a live worker; nothing to do", job_id)
        return "skipped"
    job = db.session.get(Job, job_id)
    progress = Progress(job_id, run_id)
    heartbeat = _Heartbeat(current_app._get_current_object(), job_id, progress)
    heartbeat.start()
    state, error, summary, retry, needs_auth = "failed", None, None, None, False
    try:
        summary = work(job, progress)
        state = "succeeded"
    except JobCancelled:
        state, error = "cancelled", "cancelled while running"
    except RetryLater as exc:
        retry, error = exc, exc.reason
    except NeedsAuth as exc:
        error, needs_auth = exc.message, True
    except DepotError as exc:
        error = exc.message
    except SQLAlchemyError as exc:  # its text holds the statement and its values: log only
        log.exception("job %s failed", job_id)
        error = f"a database error stopped the job ({type(exc).__name__}); the worker's log has more"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
    finally:
        heartbeat.stopping.set()
        heartbeat.join()
    db.session.rollback()
    row = db.session.get(Job, job_id)
    db.session.refresh(row)
    if row.state != "running" or row.run_id != run_id:
        # Recovery gave the job to another worker while this one was silent: let that one finish.
        log.warning("job %s was taken over (%s); this run stops without writing", job_id, row.state)
        return "superseded"
    try:
        progress.flush()
    except Exception:
        db.session.rollback()
    if needs_auth and row.dp_id is not None:  # nothing will work at that DP until it is reconnected
        notifications.set_dp_status(db.session.get(DistributionPoint, row.dp_id), "needs-auth", error)
    if retry is not None:
        if retry.progressed:
            row.retries = 0
        if not retry.counts or row.retries < current_app.config["DEPOT_JOB_RETRIES"]:
            return _retry_later(row, retry)
        error = f"gave up after {row.retries + 1} tries: {retry.reason}"
    db.session.execute(update(Job).where(_mine(job_id, run_id), Job.state == "running").values(
        state=state, error=error, summary=summary, finished_at=utcnow(), phase=None))
    job = db.session.get(Job, job_id)
    db.session.refresh(job)
    _notify_finished(job)
    db.session.commit()
    return state


def _retry_later(job: Job, retry: RetryLater) -> str:
    """Put the job back in the queue to run again after a wait (growing with each counted try)."""
    retries = job.retries + (1 if retry.counts else 0)
    delay = retry.delay if retry.delay is not None else (
        current_app.config["DEPOT_RETRY_BASE_SECONDS"] * 2 ** (retries - 1))
    rq_job_id = f"{job.id}-{job.attempts}-{uuid.uuid4().hex[:8]}"
    _enqueue(job, rq_job_id, delay)  # if Redis is down, the recovery sweep queues it again
    when = utcnow() + timedelta(seconds=delay)
    note = (f"try {retries + 1} in {delay:.0f} s: {retry.reason}" if retry.counts
            else f"waiting {delay:.0f} s: {retry.reason}")
    db.session.execute(update(Job).where(_mine(job.id, job.run_id), Job.state == "running").values(
        state="queued", queued_at=utcnow(), retry_at=when, retries=retries, rq_job_id=rq_job_id,
        phase=note[:64], error=None, warnings=[*(job.warnings or []), note][-MAX_WARNINGS:]))
    db.session.commit()
    log.info("job %s: %s", job.id, note)
    return "retrying"


def _notify_finished(job: Job) -> None:
    where = f" of {job.dp.name}" if job.dp else ""
    if job.state == "succeeded":
        notifications.notify(f"{job.kind}.succeeded", f"{job.kind.capitalize()}{where} finished"
                             + (f": {job.summary}" if job.summary else ""),
                             dp_id=job.dp_id, job_id=job.id)
    elif job.state == "failed":
        notifications.notify(f"{job.kind}.failed", f"{job.kind.capitalize()}{where} failed: "
                             f"{job.error}", level="error", dp_id=job.dp_id, job_id=job.id)


def _rq_holds(job: Job, stale_cutoff) -> bool:
    """True when RQ still has this attempt waiting, or a worker took it only just now."""
    if not job.rq_job_id:
        return False
    try:
        status = RQJob.fetch(job.rq_job_id, connection=get_redis()).get_status(refresh=True)
    except (NoSuchJobError, ValueError):  # gone, or an id RQ would not accept
        return False
    status = str(getattr(status, "value", status))
    if status == "started":
        # Taken by a worker that never claimed the row: alive only if that was moments ago.
        return job.queued_at is not None and job.queued_at >= stale_cutoff
    return status in RQ_WAITING


def _still_lost(job: Job, stale_cutoff) -> ColumnElement[bool]:
    """The WHERE clause "this row is as lost as the sweep saw it". A worker's `claim` sets the state
    to running with a fresh heartbeat, so an update under this clause cannot undo a claim that
    slipped in between the sweep's read and its write."""
    if job.state == "running":
        alive = (Job.heartbeat_at.is_(None)) | (Job.heartbeat_at < stale_cutoff)
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
        _notify_finished(job)
        db.session.commit()
    return outcome


def _requeue(job: Job, reason: str, stale_cutoff) -> str:
    """Give the job a new attempt in RQ, or fail it when it has had enough attempts."""
    still_lost = _still_lost(job, stale_cutoff)  # as the sweep saw the row
    if job.attempts >= current_app.config["DEPOT_JOB_MAX_ATTEMPTS"]:
        return _settle(job, still_lost, "failed", state="failed", finished_at=utcnow(),
                       error=f"gave up after {job.attempts} attempts: {reason}")
    attempt = job.attempts + 1
    # RQ first: if Redis is down the row stays as it was and the next sweep tries again. If a
    # worker claims the row meanwhile, the update below changes nothing and the new attempt,
    # finding the row claimed, does nothing.
    if not _enqueue(job, f"{job.id}-{attempt}"):
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
        cutoff = _stale_cutoff()
        grace = utcnow() - timedelta(seconds=10)
        running = db.session.scalars(select(Job).where(
            Job.state == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))).all()
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
