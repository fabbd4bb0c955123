"""Jobs: list, get, cancel."""
from flask import g, request
from sqlalchemy import func, select

from portal.blueprints.api import bp
from portal.core.errors import DepotError, NotFound
from portal.extensions import db
from portal.models import Job
from portal.models.jobs import ACTIVE_STATES, FINISHED_STATES
from portal.services import distribution_points as dps
from portal.services import jobs
from portal.services.permissions import can_see_dp, require
from portal.web.auth import api_actor
from portal.web.views import paginated, pagination


def _visible(job_id: str) -> Job:
    job = jobs.get_job(job_id)
    if job.dp is not None and not can_see_dp(g.api_user, job.dp):
        raise NotFound(f"no job {job_id}")
    return job


@bp.get("/jobs")
def list_jobs():
    """Jobs newest first, filtered by ?state= and ?kind=."""
    page, per_page = pagination()
    dp_ids = [dp.id for dp in dps.visible_dps(g.api_user)]
    query = select(Job).where(Job.dp_id.in_(dp_ids) | Job.dp_id.is_(None))
    state = request.args.get("state")
    if state:
        if state not in ACTIVE_STATES + FINISHED_STATES:
            raise DepotError(f"unknown state {state!r}")
        query = query.where(Job.state == state)
    if kind := request.args.get("kind"):
        query = query.where(Job.kind == kind)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Job.created_at.desc())
                               .offset((page - 1) * per_page).limit(per_page)).all()
    return paginated([j.to_dict() for j in items], total, page, per_page)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """One job: state, bytes done/total, error."""
    return _visible(job_id).to_dict()


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a queued job or stop a running one within seconds (409 if already finished)."""
    require(g.api_user, "cancel_job")
    return jobs.cancel_job(_visible(job_id).id, api_actor()).to_dict()
