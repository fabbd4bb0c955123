from flask import request
from flask_login import current_user, login_required
from sqlalchemy import select

from portal.blueprints.jobs import bp
from portal.core.errors import NotFound
from portal.extensions import db
from portal.models import Job
from portal.services import distribution_points as dps
from portal.services import jobs
from portal.services.permissions import can_see_dp, require
from portal.web.auth import console_actor
from portal.web.views import page_or_fragment

STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def _visible_job(job_id: str) -> Job:
    job = jobs.get_job(job_id)
    if job.dp is not None and not can_see_dp(current_user, job.dp):
        raise NotFound(f"no job {job_id}")
    return job


@bp.get("/")
@login_required
def index():
    """Recent jobs, running ones first, with live progress."""
    state = request.args.get("state")
    dp_ids = [dp.id for dp in dps.visible_dps(current_user)]
    query = select(Job).where((Job.dp_id.in_(dp_ids)) | (Job.dp_id.is_(None)))
    if state in STATES:
        query = query.where(Job.state == state)
    items = db.session.scalars(query.order_by(Job.created_at.desc()).limit(100)).all()
    return page_or_fragment("jobs/index.html", "jobs/_list.html", jobs=items, state=state,
                            states=STATES)


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
    return _job_response(_visible_job(job_id))


@bp.post("/<job_id>/cancel")
@login_required
def cancel(job_id: str):
    """Cancel a queued job, or ask a running one to stop."""
    require(current_user, "cancel_job")
    job = jobs.cancel_job(_visible_job(job_id).id, console_actor())
    return _job_response(job)
