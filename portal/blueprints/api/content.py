"""Distribution points, their content, and central's assets with per-DP status."""
from flask import g, request

from portal.auth import api_actor
from portal.blueprints.api import bp
from portal.services import distribution_points as dps


@bp.get("/distribution-points")
def list_dps():
    """Every DP the caller may see, with counts per content status."""
    visible = dps.visible_dps(g.api_user)
    counts = dps.status_counts([dp.id for dp in visible])
    return {"items": [dp.to_dict(counts.get(dp.id, {})) for dp in visible]}


@bp.get("/distribution-points/<int:dp_id>")
def get_dp(dp_id: int):
    """One DP."""
    dp = dps.get_dp(dp_id, g.api_user)
    return dp.to_dict(dps.status_counts([dp.id]).get(dp.id, {}))


@bp.post("/distribution-points/<int:dp_id>/rescan")
def rescan(dp_id: int):
    """Start a rescan, or return the one already queued or running (202 {job})."""
    job, created = dps.request_rescan(dps.get_dp(dp_id, g.api_user), api_actor())
    return {"job": job.to_dict(), "created": created}, 202


@bp.get("/distribution-points/<int:dp_id>/content")
def content(dp_id: int):
    """What the DP holds (and what it lacks against central), optionally for one library."""
    dp = dps.get_dp(dp_id, g.api_user)
    return {"items": dps.content(dp, request.args.get("library"))}


@bp.get("/assets")
def assets():
    """Central's assets, each with `status_by_dp` (DP id -> status)."""
    visible = {str(dp.id) for dp in dps.visible_dps(g.api_user)}
    items = dps.central_assets_with_status()
    for item in items:
        item["status_by_dp"] = {k: v for k, v in item["status_by_dp"].items() if k in visible}
    return {"items": items}
