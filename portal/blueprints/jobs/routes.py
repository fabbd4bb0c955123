"""Routes of /jobs/: the jobs (sorted, searched, paged), one job's progress widget, cancel, and
cancel or retry of the ticked ones."""
from flask import request
from flask_login import current_user, login_required
from sqlalchemy import select

from portal.blueprints.jobs import bp
from portal.models import DistributionPoint, Job
from portal.services import bulk, job_lists, jobs
from portal.services.job_lists import JOB_STATES
from portal.services.permissions import require
from portal.web import tables
from portal.web.auth import console_actor
from portal.web.views import page_or_fragment


def _dp_ids_named(q: str):
    return Job.dp_id.in_(select(DistributionPoint.id).where(
        DistributionPoint.name.icontains(q, autoescape=True)))


DP_NAME = select(DistributionPoint.name).where(DistributionPoint.id == Job.dp_id) \
    .correlate(Job).scalar_subquery()
TABLE = tables.Table(
    columns={"created": Job.created_at, "kind": Job.kind, "dp": DP_NAME, "asset": Job.asset_key,
             "state": Job.state},
    default_sort="created", default_dir="desc", tiebreak=Job.id,
    search=(Job.kind, Job.state, Job.asset_key, Job.error, _dp_ids_named))


@bp.get("/")
@login_required
def index():
    """Jobs, newest first (or sorted by a column), searched and paged, with live progress."""
    state = request.args.get("state") if request.args.get("state") in JOB_STATES else None
    t = tables.rows_of(job_lists.jobs_query(current_user, state=state), TABLE, "jobs.index",
                       keep={"state": state})
    return page_or_fragment("jobs/index.html", "jobs/_list.html", t=t, jobs=t.rows, state=state)


@bp.post("/cancel")
@login_required
def bulk_cancel():
    """Cancel the ticked jobs that are queued or running (one audit entry each)."""
    return tables.bulk_action(bulk.cancel_jobs, request.form.getlist("job_id"), "jobs.index")


@bp.post("/retry")
@login_required
def bulk_retry():
    """Copy again what the ticked failed copies were copying."""
    return tables.bulk_action(bulk.retry_copies, request.form.getlist("job_id"), "jobs.index")


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
