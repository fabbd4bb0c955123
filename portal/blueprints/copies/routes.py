"""Content actions from the library pages: copy to DPs, copy what is missing, verify, delete."""
from flask import redirect, request, url_for
from flask_login import current_user, login_required

from portal.blueprints.copies import bp
from portal.core.errors import DepotError
from portal.services import copies, verify
from portal.services import distribution_points as dps
from portal.web.auth import console_actor
from portal.web.views import page_or_fragment


def _started(jobs: list, note: str):
    """htmx: the started jobs' progress widgets (the tables refresh on jobs-changed); a plain
    form post goes to the Jobs page."""
    if not request.htmx:
        return redirect(url_for("jobs.index"), code=303)
    response = page_or_fragment("copies/started.html", "copies/_started.html", jobs=jobs, note=note)
    response.headers["HX-Trigger"] = "jobs-changed"
    return response


def _int_list(field: str) -> list[int]:
    try:
        return [int(value) for value in request.form.getlist(field)]
    except ValueError:
        raise DepotError(f"{field} must be distribution point ids") from None


@bp.post("/")
@login_required
def create():
    """Copy the ticked assets (or the whole library) to the chosen DPs, one job per asset and DP."""
    keys = request.form.getlist("asset_keys")
    if request.form.get("whole_library"):
        keys = copies.library_assets(request.form.get("library"))
    if not keys:
        raise DepotError("tick the assets to copy first")
    dp_ids = _int_list("dp_ids")
    if not dp_ids:
        raise DepotError("choose at least one distribution point to copy to")
    jobs = copies.request_copies(console_actor(), keys, dp_ids)
    return _started(jobs, f"{len(jobs)} cop{'y' if len(jobs) == 1 else 'ies'} queued")


@bp.post("/missing/<int:dp_id>")
@login_required
def copy_missing(dp_id: int):
    """Copy everything that is missing or outdated at the DP."""
    dp = dps.get_dp(dp_id, current_user)
    keys = copies.missing_or_outdated(dp)
    jobs = copies.request_copies(console_actor(), keys, [dp.id]) if keys else []
    return _started(jobs, f"{len(jobs)} cop{'y' if len(jobs) == 1 else 'ies'} queued for {dp.name}"
                    if jobs else f"Nothing is missing or outdated at {dp.name}")


@bp.post("/verify/<int:dp_id>")
@login_required
def verify_dp(dp_id: int):
    """Hash again everything the DP holds and flag corruption."""
    job, _ = verify.request_verify(dps.get_dp(dp_id, current_user), console_actor())
    return _started([job], f"verify of {job.dp.name} queued")


@bp.post("/delete/<int:dp_id>")
@login_required
def delete(dp_id: int):
    """Remove one asset from the DP (from central only when confirmed a second time)."""
    dp = dps.get_dp(dp_id, current_user)
    # From central, the page asks twice: a confirm, then a prompt answered with "central".
    confirmed = "central" in (request.form.get("confirm"), request.headers.get("HX-Prompt"))
    job = copies.request_delete(console_actor(), dp, request.form.get("key"),
                                confirm_central=confirmed)
    return _started([job], f"delete of {job.asset_key} from {dp.name} queued")
