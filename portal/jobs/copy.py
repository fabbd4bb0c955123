"""RQ entry points for copies and deletes (queue `copies`)."""
from portal.jobs import app_context
from portal.services import copy_job
from portal.services.job_runs import run_job


def copy(job_id: str) -> str:
    """Make the job's asset at its DP identical to central's."""
    with app_context():
        return run_job(job_id, copy_job.copy_asset)


def delete(job_id: str) -> str:
    """Remove the job's asset from its DP."""
    with app_context():
        return run_job(job_id, copy_job.delete_asset)
