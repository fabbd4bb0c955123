"""RQ entry points for Depot's own upkeep (queue `default`, scheduled by `rq cron`)."""
import logging

from redis.exceptions import LockError

from portal.extensions import get_redis
from portal.jobs import app_context
from portal.services import (
    agent_deployments,
    agent_flush,
    central_changes,
    dp_management,
    job_recovery,
    transfer,
    verify,
)

log = logging.getLogger(__name__)
# A node that does not answer costs a check up to the node client's connect and read timeouts.
HEALTH_JOB_TIMEOUT = 600


def recover_lost_jobs() -> dict:
    """Requeue jobs the database says are queued or running but that no live worker holds."""
    with app_context():
        outcome = job_recovery.recover_lost_jobs()
        if outcome:
            log.warning("recovered jobs: %s", outcome)
        return outcome


def check_dp_health() -> dict:
    """Ask every enabled DP how it is; one that went offline, needs reconnecting or came back is
    notified."""
    with app_context():
        # One check at a time, so two schedulers cannot notify the same change twice.
        lock = get_redis().lock("depot:check-dp-health", timeout=HEALTH_JOB_TIMEOUT, blocking=False)
        if not lock.acquire():
            return {}
        try:
            outcome = dp_management.check_health()
        finally:
            try:
                lock.release()
            except LockError:  # expired meanwhile: nothing to release
                pass
        offline = sorted(dp_id for dp_id, status in outcome.items() if status == "offline")
        if offline:
            log.info("distribution points offline: %s", offline)
        return outcome


def verify_everything() -> list[str]:
    """Queue a verify of every enabled DP (scheduled weekly by default: DEPOT_VERIFY_CRON)."""
    with app_context():
        return [job.id for job in verify.verify_all()]


def sweep_abandoned_uploads() -> dict:
    """Abort partial cloud uploads nobody continued for a week (daily: DEPOT_SWEEP_CRON)."""
    with app_context():
        return transfer.sweep_abandoned_uploads()


def check_central_changes() -> str | None:
    """Rescan central if a stat of its files finds what the inventory does not know (the safety
    net under the watcher: every DEPOT_CENTRAL_CHECK_INTERVAL seconds)."""
    with app_context():
        job = central_changes.check_central()
        return job.id if job is not None else None


def fail_silent_deployments() -> dict:
    """Fail deployments whose agent said nothing for DEPOT_DEPLOYMENT_SILENT_AFTER seconds."""
    with app_context():
        outcome = agent_deployments.fail_silent_deployments()
        if outcome["failed"] or outcome["cancelled"]:
            log.warning("deployments whose agent went silent: %s", outcome)
        return outcome


def flush_agent_seen() -> int:
    """Write the last-seen times of quiet heartbeats (kept in Redis) to the devices."""
    with app_context():
        return agent_flush.flush_seen()
