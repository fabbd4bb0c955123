"""RQ entry point for verifies (queue `rescans`)."""
from portal.jobs import app_context
from portal.services import verify as verify_service
from portal.services.job_runs import run_job


def verify(job_id: str) -> str:
    """Hash again what the job's DP holds and flag files that no longer match."""
    with app_context():
        return run_job(job_id, verify_service.verify_dp)
