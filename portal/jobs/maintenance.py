"""RQ entry points for Depot's own upkeep (queue `default`, scheduled by `rq cron`)."""
import logging

from portal.jobs import app_context
from portal.services import jobs

log = logging.getLogger(__name__)


def recover_lost_jobs() -> dict:
    """Requeue jobs the database says are queued or running but that no live worker holds."""
    with app_context():
        outcome = jobs.recover_lost_jobs()
        if outcome:
            log.warning("recovered jobs: %s", outcome)
        return outcome
