"""Jobs as people look them up: only jobs of DPs they may see (and jobs of no DP), newest first.

The console's Jobs page, the dashboard, a library page and the API list jobs through here, so
what a viewer scoped to one site sees is decided once.
"""
from sqlalchemy import Select, func, select

from portal.core.errors import DepotError, NotFound
from portal.extensions import db
from portal.models import Job, User
from portal.models.jobs import ACTIVE_STATES, FINISHED_STATES
from portal.services.distribution_points import visible_dps
from portal.services.permissions import can_see_dp

JOB_STATES = ACTIVE_STATES + FINISHED_STATES


def visible_job(user: User, job_id: str) -> Job:
    """The job, or NotFound when there is none or it belongs to a DP the user may not see."""
    job = db.session.get(Job, job_id) if isinstance(job_id, str) else None
    if job is None or (job.dp is not None and not can_see_dp(user, job.dp)):
        raise NotFound(f"no job {job_id}")
    return job


def _visible(user: User, *, with_dpless: bool = True) -> Select:
    """Jobs on the DPs the user may see; with `with_dpless`, also jobs of no DP."""
    on_visible = Job.dp_id.in_([dp.id for dp in visible_dps(user)])
    if with_dpless:
        return select(Job).where(on_visible | Job.dp_id.is_(None))
    return select(Job).where(on_visible)


def jobs_query(user: User, *, state: str | None = None, kind: str | None = None) -> Select:
    """The jobs the user may see, in a state and of a kind, unordered (the Jobs page sorts and
    pages it)."""
    query = _visible(user)
    if state:
        if state not in JOB_STATES:
            raise DepotError(f"unknown state {state!r}")
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    return query


def list_jobs(user: User, *, state: str | None = None, kind: str | None = None, page: int = 1,
              per_page: int = 50) -> tuple[list[Job], int]:
    """One page of the jobs the user may see, newest first, and how many there are in all."""
    query = jobs_query(user, state=state, kind=kind)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Job.created_at.desc())
                               .offset((page - 1) * per_page).limit(per_page)).all()
    return list(items), total


def running_jobs(user: User, *, limit: int = 20) -> list[Job]:
    """The newest queued or running jobs on the DPs the user may see (the dashboard's)."""
    query = _visible(user, with_dpless=False).where(Job.state.in_(ACTIVE_STATES))
    return list(db.session.scalars(query.order_by(Job.created_at.desc()).limit(limit)))


def library_work(user: User, library: str) -> list[Job]:
    """Copies and deletes of a library's assets still queued or running on the DPs the user may
    see, oldest first (a library page shows their progress)."""
    query = _visible(user, with_dpless=False).where(
        Job.kind.in_(("copy", "delete")), Job.state.in_(ACTIVE_STATES),
        Job.asset_key.startswith(library + "/"))
    return list(db.session.scalars(query.order_by(Job.created_at)))


MAX_FOLLOWED = 100  # jobs one "2 copies queued" note follows (their ids ride in its URL)


def followed_jobs(user: User, ids: list[str]) -> list[Job]:
    """The jobs of `ids` the user may see, in the order given (a note of jobs started together
    follows them; ids of jobs gone or not visible are left out)."""
    ids = [i for i in dict.fromkeys(ids) if isinstance(i, str) and len(i) <= 64][:MAX_FOLLOWED]
    if not ids:
        return []
    found = {job.id: job for job in db.session.scalars(select(Job).where(Job.id.in_(ids)))}
    return [found[i] for i in ids
            if i in found and (found[i].dp is None or can_see_dp(user, found[i].dp))]
