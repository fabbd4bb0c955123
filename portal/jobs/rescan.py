"""RQ entry point for rescans (queue `rescans`)."""
from portal.jobs import app_context
from portal.services import inventory
from portal.services.job_runs import run_job


def rescan(job_id: str) -> str:
    """Rescan the DP of this job row: inventory, hashes of what changed, assets, statuses."""
    with app_context():
        return run_job(job_id, inventory.rescan)
