"""Computer Management and enrollment: devices, groups, boundaries, enrollment tokens."""
from flask import g, request

from portal.blueprints.api import bp
from portal.core.errors import DepotError
from portal.services import boundaries, device_groups, devices, enrollment
from portal.services.permissions import require
from portal.web.auth import api_actor
from portal.web.views import json_body, paginated, pagination

GROUP_CREATE_FIELDS = {"name", "description", "preferred_dp_id", "fallback_dp_ids"}
BOUNDARY_CREATE_FIELDS = {"name", "cidr", "dp_id"}
TOKEN_CREATE_FIELDS = {"name", "days", "group_id"}


def _only(body: dict, allowed: set[str]) -> dict:
    """The body when it names only allowed fields; else a 400 naming the others."""
    unknown = set(body) - allowed
    if unknown:
        raise DepotError(f"unknown field(s): {', '.join(sorted(unknown))}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    return body


def _device_dict(device) -> dict:
    return device.to_dict(status=devices.device_status(device))


def _group_dict(group, counts: dict) -> dict:
    return group.to_dict(device_count=counts.get(group.id, 0))


# --- devices ---------------------------------------------------------------------------------

@bp.get("/devices")
def list_devices():
    """Devices by name; ?q= searches name, serial, MAC, IP; ?group_id= (an id or none), ?status=."""
    page, per_page = pagination()
    items, total = devices.list_devices(request.args.get("q"), request.args.get("group_id"),
                                        request.args.get("status") or None, page, per_page,
                                        user=g.api_user)
    return paginated([_device_dict(d) for d in items], total, page, per_page)


@bp.get("/devices/<int:device_id>")
def get_device(device_id: int):
    """One device, with its status and its latest deployments."""
    device = devices.get_device(device_id, g.api_user)
    body = _device_dict(device)
    body["deployments"] = [d.to_dict() for d in
                           devices.device_history(device.id, limit=20, user=g.api_user)]
    return body


@bp.patch("/devices/<int:device_id>")
def update_device(device_id: int):
    """Rename a device or move it {name, group_id} (group_id null: no group; admins only)."""
    require(g.api_user, "manage_devices")
    device = devices.get_device(device_id, g.api_user)
    device = devices.update_device(api_actor(), device, json_body())
    return _device_dict(device)


@bp.delete("/devices/<int:device_id>")
def delete_device(device_id: int):
    """Forget a device: its token stops working, its history stays (admins only)."""
    require(g.api_user, "manage_devices")
    devices.forget_device(api_actor(), devices.get_device(device_id, g.api_user))
    return "", 204


@bp.post("/devices/move")
def move_devices():
    """Move devices {device_ids, group_id} all at once, or none on an unknown id (admins only)."""
    require(g.api_user, "manage_devices")
    body = _only(json_body(), {"device_ids", "group_id"})
    if "group_id" not in body:
        raise DepotError("give group_id: the group's id, or null for no group")
    moved = devices.move_devices(api_actor(), body.get("device_ids"), body["group_id"])
    return {"items": [_device_dict(d) for d in moved]}


# --- groups ----------------------------------------------------------------------------------

@bp.get("/groups")
def list_groups():
    """Every group with its preferred DP, ordered fallbacks and device count (a viewer scoped to
    sites: their sites' groups)."""
    counts = device_groups.device_counts(g.api_user)
    return {"items": [_group_dict(grp, counts) for grp in device_groups.list_groups(g.api_user)],
            "ungrouped": counts.get(None, 0)}


@bp.post("/groups")
def create_group():
    """Add a group {name, description, preferred_dp_id, fallback_dp_ids} (admins only)."""
    require(g.api_user, "manage_devices")
    body = _only(json_body(), GROUP_CREATE_FIELDS)
    group = device_groups.create_group(api_actor(), body.get("name"), body.get("description"),
                                 body.get("preferred_dp_id"), body.get("fallback_dp_ids"))
    return _group_dict(group, device_groups.device_counts()), 201


@bp.get("/groups/<int:group_id>")
def get_group(group_id: int):
    """One group with its device count."""
    return _group_dict(device_groups.get_group(group_id, g.api_user), device_groups.device_counts())


@bp.patch("/groups/<int:group_id>")
def update_group(group_id: int):
    """Change a group's name, description, preferred DP or fallbacks (admins only)."""
    require(g.api_user, "manage_devices")
    group = device_groups.get_group(group_id, g.api_user)
    group = device_groups.update_group(api_actor(), group, json_body())
    return _group_dict(group, device_groups.device_counts())


@bp.delete("/groups/<int:group_id>")
def delete_group(group_id: int):
    """Delete a group; its devices stay, in no group (admins only)."""
    require(g.api_user, "manage_devices")
    device_groups.delete_group(api_actor(), device_groups.get_group(group_id, g.api_user))
    return "", 204


# --- boundaries ------------------------------------------------------------------------------

@bp.get("/boundaries")
def list_boundaries():
    """Every boundary: a subnet (CIDR) and the DP its devices download from (a viewer scoped to
    sites: those whose DP is at their sites)."""
    return {"items": [b.to_dict() for b in boundaries.list_boundaries(g.api_user)]}


@bp.post("/boundaries")
def create_boundary():
    """Add a boundary {name, cidr, dp_id} (admins only)."""
    require(g.api_user, "manage_devices")
    body = _only(json_body(), BOUNDARY_CREATE_FIELDS)
    boundary = boundaries.create_boundary(api_actor(), body.get("name"), body.get("cidr"),
                                       body.get("dp_id"))
    return boundary.to_dict(), 201


@bp.get("/boundaries/<int:boundary_id>")
def get_boundary(boundary_id: int):
    """One boundary."""
    return boundaries.get_boundary(boundary_id, g.api_user).to_dict()


@bp.patch("/boundaries/<int:boundary_id>")
def update_boundary(boundary_id: int):
    """Change a boundary's name, subnet or DP (admins only)."""
    require(g.api_user, "manage_devices")
    boundary = boundaries.get_boundary(boundary_id, g.api_user)
    boundary = boundaries.update_boundary(api_actor(), boundary, json_body())
    return boundary.to_dict()


@bp.delete("/boundaries/<int:boundary_id>")
def delete_boundary(boundary_id: int):
    """Remove a boundary (admins only)."""
    require(g.api_user, "manage_devices")
    boundaries.delete_boundary(api_actor(), boundaries.get_boundary(boundary_id, g.api_user))
    return "", 204


# --- enrollment tokens -----------------------------------------------------------------------

@bp.get("/enrollment-tokens")
def list_enrollment_tokens():
    """Every enrollment token, newest first, never the token itself (admins only)."""
    require(g.api_user, "manage_settings")
    return {"items": [t.to_dict() for t in enrollment.list_enrollment_tokens()]}


@bp.post("/enrollment-tokens")
def create_enrollment_token():
    """A new enrollment token {name, days, group_id}: 201 {token, enrollment_token} (admins)."""
    require(g.api_user, "manage_settings")
    body = _only(json_body(), TOKEN_CREATE_FIELDS)
    token, secret = enrollment.create_enrollment_token(api_actor(), body.get("name"),
                                                       body.get("days", 7), body.get("group_id"))
    server = enrollment.server_url(request.host_url)
    return {"token": secret, "enrollment_token": token.to_dict(),
            "command": enrollment.module_command(server, secret)}, 201


@bp.post("/enrollment-tokens/<int:token_id>/revoke")
def revoke_enrollment_token(token_id: int):
    """Revoke an enrollment token: no more devices enroll with it (admins only)."""
    require(g.api_user, "manage_settings")
    return enrollment.revoke_enrollment_token(api_actor(), token_id).to_dict()
