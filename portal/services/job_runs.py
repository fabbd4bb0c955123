"""A job's run on a worker: claim the row, report progress, keep a heartbeat, record the end.

`run_job` is what every RQ entry point calls (portal/jobs/): it claims the row atomically (so
an attempt delivered twice does the work once), runs the service's work with a `Progress` the
work reports through and a heartbeat thread that notices a cancel, then writes how it ended, or
puts the job back in the queue for later when the work raised `RetryLater`.
"""
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Callable

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from portal.core.errors import DepotError, JobCancelled, NeedsAuth
from portal.core.throughput import RateWindow
from portal.extensions import db
from portal.models import DistributionPoint, Job, utcnow
from portal.services import notifications
from portal.services.jobs import MAX_WARNINGS, enqueue
from portal.services.progress_words import job_title

log = logging.getLogger(__name__)


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


def stale_cutoff() -> datetime:
    """A running job whose heartbeat is older than this is presumed dead (its worker is gone)."""
    return utcnow() - timedelta(seconds=current_app.config["DEPOT_JOB_STALE_SECONDS"])


def claim(job_id: str) -> str | None:
    """Take the job for this run: queued, or running but silent past the stale limit. Returns the
    run's id, which every later write of this run names, or None if the job is not to be had."""
    now, run_id = utcnow(), uuid.uuid4().hex
    claimed = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested.is_(False), or_(
            Job.state == "queued",
            (Job.state == "running") & (Job.heartbeat_at < stale_cutoff()),
        ))
        .values(state="running", started_at=now, heartbeat_at=now, error=None, run_id=run_id,
                bytes_per_second=None)
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
        self._rate = RateWindow()

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
        if "bytes_done" in values:  # sampled at each write: a few a second is plenty for a rate
            self._rate.add(time.monotonic(), values["bytes_done"])
            rate = self._rate.bytes_per_second()
            values["bytes_per_second"] = None if rate is None else int(rate)
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
        error = (f"a database error stopped the job ({type(exc).__name__}); "
                 "the worker's log has more")
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
    if needs_auth and row.dp_id is not None:  # nothing works at that DP until it is reconnected
        notifications.set_dp_status(db.session.get(DistributionPoint, row.dp_id), "needs-auth",
                                    error)
    if retry is not None:
        if retry.progressed:
            row.retries = 0
        if not retry.counts or row.retries < current_app.config["DEPOT_JOB_RETRIES"]:
            return _retry_later(row, retry)
        error = f"gave up after {row.retries + 1} tries: {retry.reason}"
    db.session.execute(update(Job).where(_mine(job_id, run_id), Job.state == "running").values(
        state=state, error=error, summary=summary, finished_at=utcnow(), phase=None,
        bytes_per_second=None))
    job = db.session.get(Job, job_id)
    db.session.refresh(job)
    notify_finished(job)
    db.session.commit()
    return state


def _retry_later(job: Job, retry: RetryLater) -> str:
    """Put the job back in the queue to run again after a wait (growing with each counted try)."""
    retries = job.retries + (1 if retry.counts else 0)
    delay = retry.delay if retry.delay is not None else (
        current_app.config["DEPOT_RETRY_BASE_SECONDS"] * 2 ** (retries - 1))
    rq_job_id = f"{job.id}-{job.attempts}-{uuid.uuid4().hex[:8]}"
    enqueue(job, rq_job_id, delay)  # if Redis is down, the recovery sweep queues it again
    when = utcnow() + timedelta(seconds=delay)
    note = (f"try {retries + 1} in {delay:.0f} s: {retry.reason}" if retry.counts
            else f"waiting {delay:.0f} s: {retry.reason}")
    db.session.execute(update(Job).where(_mine(job.id, job.run_id), Job.state == "running").values(
        state="queued", queued_at=utcnow(), retry_at=when, retries=retries, rq_job_id=rq_job_id,
        phase=note[:64], error=None, bytes_per_second=None,
        warnings=[*(job.warnings or []), note][-MAX_WARNINGS:]))
    db.session.commit()
    log.info("job %s: %s", job.id, note)
    return "retrying"


def notify_finished(job: Job) -> None:
    """Tell everyone a job succeeded or failed (a cancel is no news)."""
    title = job_title(job)  # "Copy to Seattle", "Rescan of Central"
    if job.state == "succeeded":
        notifications.notify(f"{job.kind}.succeeded", f"{title} finished"
                             + (f": {job.summary}" if job.summary else ""),
                             dp_id=job.dp_id, job_id=job.id)
    elif job.state == "failed":
        notifications.notify(f"{job.kind}.failed", f"{title} failed: {job.error}",
                             level="error", dp_id=job.dp_id, job_id=job.id)
