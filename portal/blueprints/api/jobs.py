"""Jobs: list, get, cancel."""
from flask import g, request

from portal.blueprints.api import bp
from portal.services import job_lists, jobs
from portal.services.permissions import require
from portal.web.auth import api_actor
from portal.web.views import paginated, pagination


@bp.get("/jobs")
def list_jobs():
    """Jobs newest first, filtered by ?state= and ?kind=."""
    page, per_page = pagination()
    items, total = job_lists.list_jobs(g.api_user, state=request.args.get("state"),
                                       kind=request.args.get("kind"), page=page,
                                       per_page=per_page)
    return paginated([j.to_dict() for j in items], total, page, per_page)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """One job: state, bytes done/total (and, for a copy, sent), error."""
    return job_lists.visible_job(g.api_user, job_id).to_dict()


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a queued job or stop a running one within seconds (409 if already finished)."""
    require(g.api_user, "cancel_job")
    return jobs.cancel_job(job_lists.visible_job(g.api_user, job_id).id, api_actor()).to_dict()
