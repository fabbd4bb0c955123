"""Routes of /computers/: devices, groups and boundaries (everyone looks; admins change)."""
from flask import make_response, redirect, request, url_for
from flask_login import current_user, login_required

from portal.blueprints.computers import bp
from portal.core.errors import DepotError
from portal.services import boundaries as subnets  # `boundaries` is the page's view
from portal.services import device_groups, devices
from portal.services import distribution_points as dps
from portal.web.auth import console_actor
from portal.web.views import page_number, page_or_fragment, require_role_action

PER_PAGE = 50
FALLBACK_SLOTS = 3


def _go(endpoint: str, **values):
    """After a change that leaves this fragment: htmx loads the page, a plain form gets a 303."""
    url = url_for(endpoint, **values)
    if request.htmx:
        response = make_response("", 200)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


# --- devices ---------------------------------------------------------------------------------

def _filters(source) -> dict:
    """The device list's search and filters, from the query string (or a form re-rendering it)."""
    return {"q": source.get("q", "").strip(), "group_id": source.get("group_id", ""),
            "status": source.get("status", ""),
            "page": page_number() if source is request.args else 1}


def _devices_page(filters: dict, error=None, moved=None, status=200):
    items, total = devices.list_devices(filters["q"], filters["group_id"],
                                        filters["status"] or None, filters["page"], PER_PAGE)
    groups = device_groups.list_groups()
    chosen = devices.group_filter(filters["group_id"])
    return page_or_fragment(
        "computers/index.html", "computers/_devices.html", devices=items, total=total,
        filters=filters, per_page=PER_PAGE, groups=groups, statuses=devices.STATUSES,
        status_of={d.id: devices.device_status(d) for d in items}, error=error, moved=moved,
        group=next((g for g in groups if g.id == chosen), None)), status


@bp.get("/")
@login_required
def index():
    """Devices: search by name, serial, MAC or IP; filter by group and status; bulk actions."""
    return _devices_page(_filters(request.args))


@bp.post("/move")
@login_required
def move():
    """Move the ticked devices to a group (or to none), all of them or none."""
    require_role_action("manage_devices")
    filters = _filters(request.form)
    try:
        moved = devices.move_devices(console_actor(), request.form.getlist("device_id"),
                                     request.form.get("to_group_id") or None)
    except DepotError as exc:
        return _devices_page(filters, exc.message, status=exc.status)
    if request.htmx:
        return _devices_page(filters, moved=moved)
    return redirect(url_for(".index", **{k: v for k, v in filters.items() if v and k != "page"}),
                    code=303)


@bp.post("/deploy")
@login_required
def deploy():
    """Deploy to the ticked devices: on to the deployment form with them chosen."""
    require_role_action("deploy")
    ids = [i for i in request.form.getlist("device_id") if i.isdecimal()]
    if not ids:
        raise DepotError("tick the devices to deploy to first")
    return redirect(url_for("deployments.new", device_id=ids), code=303)


def _device_page(device, error=None, status=200):
    return page_or_fragment(
        "computers/device.html", "computers/_device.html", device=device,
        device_status=devices.device_status(device), groups=device_groups.list_groups(),
        history=devices.device_history(device.id, user=current_user), error=error), status


@bp.get("/<int:device_id>")
@login_required
def show_device(device_id: int):
    """One device: what its agent last said, its group, and its deployments."""
    return _device_page(devices.get_device(device_id))


@bp.post("/<int:device_id>")
@login_required
def update_device(device_id: int):
    """Rename a device or move it to another group."""
    require_role_action("manage_devices")
    device = devices.get_device(device_id)
    try:
        devices.update_device(console_actor(), device, {
            "name": request.form.get("name", ""), "group_id": request.form.get("group_id") or None})
    except DepotError as exc:
        return _device_page(device, exc.message, exc.status)
    if request.htmx:
        return _device_page(device)
    return redirect(url_for(".show_device", device_id=device.id), code=303)


@bp.post("/<int:device_id>/forget")
@login_required
def forget_device(device_id: int):
    """Forget a device: its agent must enroll again; its deployments stay in the history."""
    require_role_action("manage_devices")
    devices.forget_device(console_actor(), devices.get_device(device_id))
    return _go(".index")


# --- groups ----------------------------------------------------------------------------------

def _group_values(form) -> dict:
    """A group form's fields as the service takes them; fallbacks in slot order, blanks skipped."""
    slots = sorted((k for k in form if k.startswith("fallback_") and k[9:].isdigit()),
                   key=lambda k: int(k[9:]))
    return {"name": form.get("name", ""), "description": form.get("description", ""),
            "preferred_dp_id": form.get("preferred_dp_id") or None,
            "fallback_dp_ids": [form[k] for k in slots if form[k]]}


def _groups_page(error=None, form=None, status=200):
    return page_or_fragment(
        "computers/groups.html", "computers/_groups.html", groups=device_groups.list_groups(),
        counts=device_groups.device_counts(), dps=dps.visible_dps(current_user),
        dp_names={dp.id: dp.name for dp in dps.visible_dps(current_user)},
        slots=FALLBACK_SLOTS, error=error, form=form or {}), status


@bp.get("/groups")
@login_required
def groups():
    """Groups with their preferred DP, ordered fallbacks and device counts."""
    return _groups_page()


@bp.post("/groups")
@login_required
def create_group():
    """Add a group."""
    require_role_action("manage_devices")
    values = _group_values(request.form)
    try:
        device_groups.create_group(console_actor(), **values)
    except DepotError as exc:
        return _groups_page(exc.message, values, exc.status)
    if request.htmx:
        return _groups_page()
    return redirect(url_for(".groups"), code=303)


def _group_form(group, values=None, error=None, status=200):
    values = values or {"name": group.name, "description": group.description,
                        "preferred_dp_id": group.preferred_dp_id,
                        "fallback_dp_ids": list(group.fallback_dp_ids or [])}
    return page_or_fragment(
        "computers/group_edit.html", "computers/_group_form.html", group=group, form=values,
        dps=dps.visible_dps(current_user), error=error,
        slots=max(FALLBACK_SLOTS, len(values["fallback_dp_ids"]))), status


@bp.get("/groups/<int:group_id>/edit")
@login_required
def edit_group(group_id: int):
    """The form to change a group's name, description, preferred DP and fallbacks (admins)."""
    require_role_action("manage_devices")
    return _group_form(device_groups.get_group(group_id))


@bp.post("/groups/<int:group_id>")
@login_required
def update_group(group_id: int):
    """Save a group's changes; errors: the form again, with why."""
    require_role_action("manage_devices")
    group = device_groups.get_group(group_id)
    values = _group_values(request.form)
    try:
        device_groups.update_group(console_actor(), group, values)
    except DepotError as exc:
        return _group_form(group, values, exc.message, exc.status)
    return _go(".groups")


@bp.post("/groups/<int:group_id>/delete")
@login_required
def delete_group(group_id: int):
    """Delete a group; its devices stay, in no group."""
    require_role_action("manage_devices")
    device_groups.delete_group(console_actor(), device_groups.get_group(group_id))
    if request.htmx:
        return _groups_page()
    return redirect(url_for(".groups"), code=303)


# --- boundaries ------------------------------------------------------------------------------

def _boundaries_page(error=None, form=None, status=200):
    return page_or_fragment(
        "computers/boundaries.html", "computers/_boundaries.html",
        boundaries=subnets.list_boundaries(), dps=dps.visible_dps(current_user), error=error,
        form=form or {}), status


@bp.get("/boundaries")
@login_required
def boundaries():
    """Boundaries: IP subnets whose devices download from one DP."""
    return _boundaries_page()


@bp.post("/boundaries")
@login_required
def create_boundary():
    """Add a boundary."""
    require_role_action("manage_devices")
    values = {k: request.form.get(k, "") for k in ("name", "cidr", "dp_id")}
    try:
        subnets.create_boundary(console_actor(), values["name"], values["cidr"],
                                values["dp_id"] or None)
    except DepotError as exc:
        return _boundaries_page(exc.message, values, exc.status)
    if request.htmx:
        return _boundaries_page()
    return redirect(url_for(".boundaries"), code=303)


@bp.post("/boundaries/<int:boundary_id>/delete")
@login_required
def delete_boundary(boundary_id: int):
    """Remove a boundary."""
    require_role_action("manage_devices")
    subnets.delete_boundary(console_actor(), subnets.get_boundary(boundary_id))
    if request.htmx:
        return _boundaries_page()
    return redirect(url_for(".boundaries"), code=303)
