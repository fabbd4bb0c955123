"""Content actions from the library pages: copy to DPs, copy what is missing, verify, delete."""
from flask import request
from flask_login import current_user, login_required

from portal.blueprints.copies import bp
from portal.blueprints.copies.forms import CopyForm, DeleteForm
from portal.core.errors import DepotError
from portal.services import copies, job_lists, progress_words, verify
from portal.services import distribution_points as dps
from portal.web.auth import console_actor
from portal.web.views import page_or_fragment, see_other


def _started(jobs: list, nothing: str = ""):
    """htmx: the started jobs' progress widgets under a note that follows them ("2 copies to
    Seattle queued", later "2 copies to Seattle done"; the tables refresh on jobs-changed); a
    plain form post goes to the Jobs page."""
    if not request.htmx:
        return see_other("jobs.index")
    note, follow = progress_words.started_note(jobs, nothing)
    response = page_or_fragment("copies/started.html", "copies/_started.html", jobs=jobs,
                                note=note, follow=follow)
    response.headers["HX-Trigger"] = "jobs-changed"
    return response


@bp.get("/started")
@login_required
def started():
    """The note over jobs started together, as they are now (it polls while one still runs)."""
    jobs = job_lists.followed_jobs(current_user, request.args.getlist("job"))
    note, follow = progress_words.started_note(jobs)
    return page_or_fragment("copies/started.html", "copies/_started_note.html", jobs=jobs,
                            note=note, follow=follow)


@bp.post("/")
@login_required
def create():
    """Copy the ticked assets (or the whole library) to the chosen DPs, one job per asset and DP."""
    form = CopyForm()
    keys = copies.library_assets(form.library.data) if form.whole_library.data \
        else form.asset_keys.data
    if not keys:
        raise DepotError("tick the assets to copy first")
    dp_ids = form.dp_ids.numbers()
    if not dp_ids:
        raise DepotError("choose at least one distribution point to copy to")
    jobs = copies.request_copies(console_actor(), keys, dp_ids)
    return _started(jobs)


@bp.post("/missing/<int:dp_id>")
@login_required
def copy_missing(dp_id: int):
    """Copy everything that is missing or outdated at the DP."""
    dp = dps.get_dp(dp_id, current_user)
    keys = copies.missing_or_outdated(dp)
    jobs = copies.request_copies(console_actor(), keys, [dp.id]) if keys else []
    return _started(jobs, f"Nothing is missing or outdated at {dp.name}")


@bp.post("/verify/<int:dp_id>")
@login_required
def verify_dp(dp_id: int):
    """Hash again everything the DP holds and flag corruption."""
    job, _ = verify.request_verify(dps.get_dp(dp_id, current_user), console_actor())
    return _started([job])


@bp.post("/delete/<int:dp_id>")
@login_required
def delete(dp_id: int):
    """Remove one asset from the DP (from central only when confirmed a second time)."""
    dp = dps.get_dp(dp_id, current_user)
    form = DeleteForm()
    # From central, the page asks twice: a confirm, then a prompt answered with "central".
    confirmed = "central" in (form.confirm.data, request.headers.get("HX-Prompt"))
    job = copies.request_delete(console_actor(), dp, form.key.data, confirm_central=confirmed)
    return _started([job])
