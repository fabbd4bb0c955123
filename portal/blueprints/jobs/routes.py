"""Routes of /jobs/: recent jobs, one job's progress widget, cancel."""
from flask import request
from flask_login import current_user, login_required

from portal.blueprints.jobs import bp
from portal.models import Job
from portal.services import job_lists, jobs
from portal.services.job_lists import JOB_STATES
from portal.services.permissions import require
from portal.web.auth import console_actor
from portal.web.views import page_or_fragment


@bp.get("/")
@login_required
def index():
    """Recent jobs, newest first, with live progress."""
    state = request.args.get("state")
    items, _ = job_lists.list_jobs(current_user, state=state if state in JOB_STATES else None,
                                   per_page=100)
    return page_or_fragment("jobs/index.html", "jobs/_list.html", jobs=items, state=state)


def _job_response(job: Job):
    response = page_or_fragment("jobs/show.html", "jobs/_job.html", job=job)
    if not job.is_active:
        # Pages listening for this refresh what the job changed (asset tables, DP rows).
        response.headers["HX-Trigger"] = "jobs-changed"
    return response


@bp.get("/<job_id>")
@login_required
def show(job_id: str):
    """One job; its fragment polls itself while the job runs."""
    return _job_response(job_lists.visible_job(current_user, job_id))


@bp.post("/<job_id>/cancel")
@login_required
def cancel(job_id: str):
    """Cancel a queued job, or ask a running one to stop."""
    require(current_user, "cancel_job")
    job = jobs.cancel_job(job_lists.visible_job(current_user, job_id).id, console_actor())
    return _job_response(job)
