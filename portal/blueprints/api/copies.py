"""Copies of central's assets to DPs, and verifies of what DPs hold."""
from flask import g, request

from portal.blueprints.api import bp
from portal.services import copies
from portal.services import distribution_points as dps
from portal.services import verify as verify_service
from portal.web.auth import api_actor
from portal.web.views import json_body


@bp.post("/copies")
def create_copies():
    """Copy {asset_keys} (or a whole {library}) to {dp_ids}: 202 {jobs}, one per asset and DP,
    deduplicated."""
    body = json_body()
    whole_library = "library" in body and "asset_keys" not in body
    keys = copies.library_assets(body["library"]) if whole_library else body.get("asset_keys")
    jobs = copies.request_copies(api_actor(), keys, body.get("dp_ids"))
    return {"jobs": [job.to_dict() for job in jobs]}, 202


@bp.post("/distribution-points/<int:dp_id>/copy-missing")
def copy_missing(dp_id: int):
    """Copy every asset that is missing or outdated at the DP: 202 {jobs}."""
    dp = dps.get_dp(dp_id, g.api_user)
    keys = copies.missing_or_outdated(dp)
    if not keys:
        return {"jobs": []}, 202
    jobs = copies.request_copies(api_actor(), keys, [dp.id])
    return {"jobs": [job.to_dict() for job in jobs]}, 202


@bp.post("/distribution-points/<int:dp_id>/verify")
def verify(dp_id: int):
    """Hash again everything the DP holds and flag corruption: 202 {job}."""
    job, created = verify_service.request_verify(dps.get_dp(dp_id, g.api_user), api_actor())
    return {"job": job.to_dict(), "created": created}, 202


@bp.delete("/distribution-points/<int:dp_id>/assets")
def delete_asset(dp_id: int):
    """Remove ?key= from the DP (202 {job}); from central also ?confirm=central."""
    dp = dps.get_dp(dp_id, g.api_user)
    job = copies.request_delete(api_actor(), dp, request.args.get("key"),
                                confirm_central=request.args.get("confirm") == "central")
    return {"job": job.to_dict()}, 202
