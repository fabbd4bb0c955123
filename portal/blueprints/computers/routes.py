"""Routes of /computers/: devices, groups and boundaries (everyone looks; admins change)."""
import ipaddress

from flask import request
from flask_login import current_user, login_required
from sqlalchemy import func, select

from portal.blueprints.computers import bp
from portal.blueprints.computers.forms import (
    BoundaryForm,
    DeviceFilterForm,
    DeviceForm,
    DevicesForm,
    GroupForm,
)
from portal.core.errors import DepotError
from portal.models import Device, DeviceGroup
from portal.services import boundaries as subnets  # `boundaries` is the page's view
from portal.services import claims as device_claims
from portal.services import device_groups, devices
from portal.services import distribution_points as dps
from portal.web import tables
from portal.web.auth import console_actor
from portal.web.views import (
    load_page,
    page_number,
    page_or_fragment,
    require_role_action,
    see_other,
)

PER_PAGE = 50
FALLBACK_SLOTS = 3


# --- devices ---------------------------------------------------------------------------------

GROUP_NAME = select(DeviceGroup.name).where(DeviceGroup.id == Device.group_id) \
    .correlate(Device).scalar_subquery()
DEVICES = tables.Table(
    columns={"name": func.lower(Device.name), "serial": Device.serial, "os": Device.os,
             "last_seen": Device.last_seen_at, "agent": Device.agent_version,
             "group": func.lower(GROUP_NAME)},
    default_sort="name", tiebreak=Device.id, per_page=PER_PAGE)  # q: the service searches


def _devices_page(filters: dict, error=None, moved=None, status=200):
    asked = tables.read(DEVICES, request.values)  # a bulk form's post sends the order back too
    t = tables.rows_of(devices.devices_query(filters["q"], filters["group_id"],
                                             filters["status"] or None, user=current_user),
                       DEVICES, "computers.index", asked=asked,
                       keep={"group_id": filters["group_id"], "status": filters["status"]})
    items = devices.with_pending_seen(t.rows)
    groups = device_groups.list_groups(current_user)
    chosen = devices.group_filter(filters["group_id"])
    return page_or_fragment(
        "computers/index.html", "computers/_devices.html", devices=items, total=t.total, t=t,
        filters=filters, per_page=PER_PAGE, groups=groups,
        status_of={d.id: devices.device_status(d) for d in items}, error=error, moved=moved,
        claims=device_claims.list_claims(user=current_user),
        group=next((g for g in groups if g.id == chosen), None)), status


@bp.get("/")
@login_required
def index():
    """Devices: search by name, serial, MAC or IP; filter by group and status; bulk actions."""
    return _devices_page(dict(DeviceFilterForm(request.args).filters(), page=page_number()))


@bp.post("/move")
@login_required
def move():
    """Move the ticked devices to a group (or to none), all of them or none."""
    require_role_action("manage_devices")
    form = DevicesForm()
    filters = dict(form.filters(), page=1)
    try:
        moved = devices.move_devices(console_actor(), form.device_id.data,
                                     form.to_group_id.data or None)
    except DepotError as exc:
        return _devices_page(filters, exc.message, status=exc.status)
    if request.htmx:
        return _devices_page(filters, moved=moved)
    return see_other(".index", **{k: v for k, v in form.filters().items() if v})


@bp.post("/deploy")
@login_required
def deploy():
    """Deploy to the ticked devices: on to the deployment form with them chosen."""
    require_role_action("deploy")
    ids = [i for i in DevicesForm().device_id.data if i.isdecimal()]
    if not ids:
        raise DepotError("tick the devices to deploy to first")
    return see_other("deployments.new", device_id=ids)


def _device_page(device, error=None, status=200):
    return page_or_fragment(
        "computers/device.html", "computers/_device.html", device=device,
        device_status=devices.device_status(device), groups=device_groups.list_groups(current_user),
        history=devices.device_history(device.id, user=current_user), error=error,
        claims=[] if device.is_claim else device_claims.list_claims(device.id, current_user)), status


@bp.get("/<int:device_id>")
@login_required
def show_device(device_id: int):
    """One device: what its agent last said, its group, and its deployments."""
    return _device_page(devices.get_device(device_id, current_user))


@bp.post("/<int:device_id>")
@login_required
def update_device(device_id: int):
    """Rename a device or move it to another group."""
    require_role_action("manage_devices")
    device = devices.get_device(device_id, current_user)
    try:
        devices.update_device(console_actor(), device, DeviceForm().changes())
    except DepotError as exc:
        return _device_page(device, exc.message, exc.status)
    if request.htmx:
        return _device_page(device)
    return see_other(".show_device", device_id=device.id)


@bp.post("/<int:device_id>/forget")
@login_required
def forget_device(device_id: int):
    """Forget a device: its agent must enroll again; its deployments stay in the history."""
    require_role_action("manage_devices")
    devices.forget_device(console_actor(), devices.get_device(device_id, current_user))
    return load_page(".index")


@bp.post("/claims/<int:claim_id>/approve")
@login_required
def approve_claim(claim_id: int):
    """Approve a pending claim: it merges into the device it claims to be (admins)."""
    require_role_action("manage_devices")
    device = device_claims.approve(console_actor(), device_claims.get_claim(claim_id))
    return load_page(".show_device", device_id=device.id)


@bp.post("/claims/<int:claim_id>/refuse")
@login_required
def refuse_claim(claim_id: int):
    """Refuse a pending claim: its record and token go; the device is untouched (admins)."""
    require_role_action("manage_devices")
    device = device_claims.refuse(console_actor(), device_claims.get_claim(claim_id))
    return load_page(".show_device", device_id=device.id)


# --- groups ----------------------------------------------------------------------------------

def _groups_table(counts: dict, dp_names: dict) -> tables.Table:
    return tables.Table(
        columns={"name": lambda g: g.name, "preferred": lambda g: dp_names.get(g.preferred_dp_id),
                 "devices": lambda g: counts.get(g.id, 0)},
        default_sort="name", search=(lambda g: g.name, lambda g: g.description,
                                     lambda g: dp_names.get(g.preferred_dp_id)))


def _groups_page(form=None, error=None, status=200):
    visible = dps.visible_dps(current_user)
    counts = device_groups.device_counts(current_user)
    dp_names = {dp.id: dp.name for dp in visible}
    table = _groups_table(counts, dp_names)
    t = tables.items_of(device_groups.list_groups(current_user), table, "computers.groups",
                        asked=tables.read(table, request.values))
    return page_or_fragment(
        "computers/groups.html", "computers/_groups.html", t=t, groups=t.rows,
        counts=counts, dps=visible,
        dp_names={dp.id: dp.name for dp in visible}, slots=FALLBACK_SLOTS, error=error,
        form=form or GroupForm(formdata=None)), status


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
    form = GroupForm()
    try:
        device_groups.create_group(console_actor(), **form.values())
    except DepotError as exc:
        return _groups_page(form, exc.message, exc.status)
    return _groups_page() if request.htmx else see_other(".groups")


def _group_form(group, form=None, error=None, status=200):
    form = form or GroupForm.for_group(group)
    return page_or_fragment(
        "computers/group_edit.html", "computers/_group_form.html", group=group, form=form,
        dps=dps.visible_dps(current_user), error=error,
        slots=max(FALLBACK_SLOTS, len(form.fallback_dp_ids.data))), status


@bp.get("/groups/<int:group_id>/edit")
@login_required
def edit_group(group_id: int):
    """The form to change a group's name, description, preferred DP and fallbacks (admins)."""
    require_role_action("manage_devices")
    return _group_form(device_groups.get_group(group_id, current_user))


@bp.post("/groups/<int:group_id>")
@login_required
def update_group(group_id: int):
    """Save a group's changes; errors: the form again, with why."""
    require_role_action("manage_devices")
    group = device_groups.get_group(group_id, current_user)
    form = GroupForm()
    try:
        device_groups.update_group(console_actor(), group, form.values())
    except DepotError as exc:
        return _group_form(group, form, exc.message, exc.status)
    return load_page(".groups")


@bp.post("/groups/<int:group_id>/delete")
@login_required
def delete_group(group_id: int):
    """Delete a group; its devices stay, in no group."""
    require_role_action("manage_devices")
    device_groups.delete_group(console_actor(), device_groups.get_group(group_id, current_user))
    return _groups_page() if request.htmx else see_other(".groups")


# --- boundaries ------------------------------------------------------------------------------

def _subnet_order(boundary) -> tuple:
    """Subnets in address order (10.2.0.0/16 before 10.10.0.0/16), IPv4 before IPv6."""
    net = ipaddress.ip_network(boundary.cidr, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


BOUNDARIES = tables.Table(
    columns={"name": lambda b: b.name, "cidr": _subnet_order,
             "dp": lambda b: b.dp.name if b.dp else None},
    default_sort="name",
    search=(lambda b: b.name, lambda b: b.cidr, lambda b: b.dp.name if b.dp else None))


def _boundaries_page(form=None, error=None, status=200):
    t = tables.items_of(subnets.list_boundaries(current_user), BOUNDARIES, "computers.boundaries",
                        asked=tables.read(BOUNDARIES, request.values))
    return page_or_fragment(
        "computers/boundaries.html", "computers/_boundaries.html",
        t=t, boundaries=t.rows, dps=dps.visible_dps(current_user),
        error=error,
        form=form or BoundaryForm(formdata=None)), status


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
    form = BoundaryForm()
    try:
        subnets.create_boundary(console_actor(), **form.values())
    except DepotError as exc:
        return _boundaries_page(form, exc.message, exc.status)
    return _boundaries_page() if request.htmx else see_other(".boundaries")


def _boundary_form(boundary, form=None, error=None, status=200):
    return page_or_fragment(
        "computers/boundary_edit.html", "computers/_boundary_form.html", boundary=boundary,
        form=form or BoundaryForm.for_boundary(boundary), dps=dps.visible_dps(current_user),
        error=error), status


@bp.get("/boundaries/<int:boundary_id>/edit")
@login_required
def edit_boundary(boundary_id: int):
    """The form to change a boundary's name, subnet and DP (admins)."""
    require_role_action("manage_devices")
    return _boundary_form(subnets.get_boundary(boundary_id, current_user))


@bp.post("/boundaries/<int:boundary_id>")
@login_required
def update_boundary(boundary_id: int):
    """Save a boundary's changes, checked as when it was added; errors: the form again, with
    why."""
    require_role_action("manage_devices")
    boundary = subnets.get_boundary(boundary_id, current_user)
    form = BoundaryForm()
    try:
        subnets.update_boundary(console_actor(), boundary, form.values())
    except DepotError as exc:
        return _boundary_form(boundary, form, exc.message, exc.status)
    return load_page(".boundaries")


@bp.post("/boundaries/<int:boundary_id>/delete")
@login_required
def delete_boundary(boundary_id: int):
    """Remove a boundary."""
    require_role_action("manage_devices")
    subnets.delete_boundary(console_actor(), subnets.get_boundary(boundary_id, current_user))
    return _boundaries_page() if request.htmx else see_other(".boundaries")
