"""Distribution points, their content, and central's assets with per-DP status."""
from flask import g, request

from portal.blueprints.api import bp
from portal.core.errors import DepotError
from portal.services import cloud_dps, dp_management
from portal.services import distribution_points as dps
from portal.services.permissions import require
from portal.web.auth import api_actor
from portal.web.views import json_body


def _dp_json(dp, counts: dict | None = None) -> dict:
    """A DP as the API shows it: status as the console shows it (`disabled` for maintenance)."""
    if counts is None:
        counts = dps.status_counts([dp.id]).get(dp.id, {})
    item = dp.to_dict(counts)
    item["status"], item["status_reason"] = dps.health(dp)
    return item


@bp.get("/distribution-points")
def list_dps():
    """Every DP the caller may see, with counts per content status."""
    visible = dps.visible_dps(g.api_user)
    counts = dps.status_counts([dp.id for dp in visible])
    return {"items": [_dp_json(dp, counts.get(dp.id, {})) for dp in visible]}


@bp.post("/distribution-points")
def create_dp():
    """Add a DP after a connection test (201): a DP node {name, kind: "local", url, key, site,
    allow_plain_http (default false: an http:// URL is refused), tls_fingerprint (optional: the
    one a test showed; another certificate is refused)}, its certificate pinned, or
    an S3-compatible bucket {name, kind: "cloud", provider: "s3", endpoint_url, region, bucket,
    prefix, access_key_id, secret_access_key, site}. OAuth providers need a person at the
    provider's consent page: they are added in the console."""
    body = json_body()
    if body.get("kind") == "local":
        dp = dp_management.add_local(api_actor(), body.get("name"), body.get("url"),
                                     body.get("key"), body.get("site"),
                                     allow_plain_http=body.get("allow_plain_http", False),
                                     tls_fingerprint=body.get("tls_fingerprint"))
    elif body.get("kind") == "cloud":
        title = cloud_dps.provider_title(body.get("provider"))
        if body.get("provider") != "s3":
            raise DepotError(f"{title} DPs are connected in the console (Distribution Points, "
                             "Add cloud): the provider's consent page needs a person")
        dp = cloud_dps.add_s3(api_actor(), body)
    else:
        raise DepotError('kind must be "local" or "cloud"')
    return _dp_json(dp), 201


@bp.post("/distribution-points/test")
def test_dp():
    """Try {url, key} against a DP node, or an S3 bucket's settings and keys {kind: "cloud",
    provider: "s3", ...}, without saving anything: what it said (a node's health carries
    `tls_fingerprint`, its certificate's SHA-256), or why not."""
    require(g.api_user, "manage_dps")  # it makes the server connect where it is told
    body = json_body()
    if body.get("kind") == "cloud":
        cloud_dps.provider_title(body.get("provider"))
        if body.get("provider") != "s3":
            raise DepotError("only S3-compatible DPs are tested with keys")
        return {"ok": True, "bucket": cloud_dps.test_s3(body, body.get("name"))}
    health = dp_management.test_connection(body.get("url"), body.get("key"),
                                           allow_plain_http=body.get("allow_plain_http", False))
    return {"ok": True, "health": health}


@bp.get("/distribution-points/<int:dp_id>")
def get_dp(dp_id: int):
    """One DP."""
    return _dp_json(dps.get_dp(dp_id, g.api_user))


@bp.patch("/distribution-points/<int:dp_id>")
def update_dp(dp_id: int):
    """Change name, site, url, key, disabled, bandwidth_limit, allowed_hours or allow_plain_http."""
    dp = dps.get_dp(dp_id, g.api_user)
    return _dp_json(dp_management.update_dp(api_actor(), dp, json_body()))


@bp.post("/distribution-points/<int:dp_id>/accept-certificate")
def accept_certificate(dp_id: int):
    """Pin the certificate a DP node presents now {fingerprint: the one the caller checked}
    (admins; audited as dp.accept_certificate)."""
    dp = dps.get_dp(dp_id, g.api_user)
    return _dp_json(dp_management.accept_certificate(api_actor(), dp,
                                                     json_body().get("fingerprint")))


@bp.delete("/distribution-points/<int:dp_id>")
def delete_dp(dp_id: int):
    """Forget a DP; its files are never deleted."""
    dp_management.delete_dp(api_actor(), dps.get_dp(dp_id, g.api_user))
    return "", 204


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
