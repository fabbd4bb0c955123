from flask import redirect, request, url_for
from flask_login import current_user, login_required

from portal.auth import console_actor
from portal.blueprints.distribution_points import bp
from portal.blueprints.render import page_or_fragment
from portal.services import distribution_points as dps
from portal.services import DepotError
from portal.services.jobs import active_job


def _rows():
    visible = dps.visible_dps(current_user)
    return {
        "dps": visible,
        "counts": dps.status_counts([dp.id for dp in visible]),
        "health": {dp.id: dps.health(dp) for dp in visible},
        "scans": {dp.id: active_job(f"rescan:{dp.id}") for dp in visible},
    }


@bp.get("/")
@login_required
def index():
    """Every DP with kind, site, status, free space, last scan and counts per content status."""
    return page_or_fragment("distribution_points/index.html", "distribution_points/_list.html",
                            **_rows())


@bp.post("/<int:dp_id>/rescan")
@login_required
def rescan(dp_id: int):
    """Start (or join) a rescan; htmx gets the progress widget, a plain form goes to Jobs."""
    dp = dps.get_dp(dp_id, current_user)
    job, _ = dps.request_rescan(dp, console_actor())
    if request.htmx:
        return page_or_fragment("jobs/show.html", "jobs/_job.html", job=job)
    return redirect(url_for("jobs.index"), code=303)


@bp.post("/select")
@login_required
def select():
    """The DP switcher: remember which DP's content the library pages show."""
    try:
        dp_id = int(request.form.get("dp_id", ""))
    except ValueError:
        raise DepotError("choose a distribution point") from None
    dps.select_dp(current_user, dp_id)
    back = request.referrer if request.referrer and request.referrer.startswith(request.host_url) \
        else url_for("dashboard.index")
    if request.htmx:
        response = redirect(back, code=303)
        response.headers["HX-Refresh"] = "true"
        return response
    return redirect(back, code=303)
