"""Computer Management: devices and the groups they sit in (boundaries: boundaries.py)."""
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import String, cast, func, or_, select, update

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.names import clean_name
from portal.extensions import db
from portal.models import (
    Deployment,
    Device,
    DeviceGroup,
    DistributionPoint,
    EnrollmentToken,
    utcnow,
)
from portal.models.deployments import ACTIVE_DEPLOYMENT_STATES
from portal.services import audit
from portal.services.actors import Actor
from portal.services.permissions import require

STATUSES = ("online", "offline", "never")
UNGROUPED = "none"  # the group filter's value for devices in no group
MAX_FALLBACKS = 10
MAX_ID = 2 ** 31 - 1  # ids are 32-bit integers in the database: a larger one is no row's
DEVICE_FIELDS = {"name", "group_id"}
GROUP_FIELDS = {"name", "description", "preferred_dp_id", "fallback_dp_ids"}


class UnknownDevices(DepotError):
    code, status = "unknown_devices", 400


def may_manage(actor: Actor) -> None:
    """PermissionDenied unless the person may manage devices (the CLI and the system may)."""
    if actor.user is not None:  # None: the system itself or the CLI
        require(actor.user, "manage_devices")


def clean_text(value, field: str, max_length: int = 100) -> str:
    """A name or description from a person, stripped; DepotError saying what is wrong with it."""
    try:
        return clean_name(value, field, max_length)
    except ValueError as exc:
        raise DepotError(str(exc)) from None


def refuse_unknown(changes: dict, allowed: set[str]) -> None:
    """DepotError naming the fields of `changes` that are not in `allowed`."""
    if not isinstance(changes, dict):
        raise DepotError("send the changes as a JSON object")
    unknown = set(changes) - allowed
    if unknown:
        raise DepotError(f"unknown field(s): {', '.join(sorted(unknown))}; "
                         f"allowed: {', '.join(sorted(allowed))}")


def clean_id(value, field: str) -> int:
    """A database id given by a person or a program: a positive whole number (not a bool)."""
    if isinstance(value, str) and value.strip().isdecimal():  # not isdigit: int("²") fails
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise DepotError(f"{field} must be a positive whole number (an id)")
    return value


# --- devices ---------------------------------------------------------------------------------

def online_cutoff(now: datetime | None = None) -> datetime:
    """Devices seen after this moment are online: three heartbeat intervals back from now."""
    return (now or utcnow()) - timedelta(seconds=3 * current_app.config["DEPOT_AGENT_INTERVAL"])


def device_status(device: Device, now: datetime | None = None) -> str:
    """`online` when seen within 3 heartbeat intervals, `offline` when seen before, else `never`."""
    if device.last_seen_at is None:
        return "never"
    return "online" if device.last_seen_at >= online_cutoff(now) else "offline"


def group_filter(value) -> int | str | None:
    """The group filter from a query string or JSON: None (all), UNGROUPED ("none"), or an id."""
    if value is None or value == "":
        return None
    if value == UNGROUPED:
        return UNGROUPED
    return clean_id(value, "group_id")


def list_devices(q: str | None = None, group_id=None, status: str | None = None,
                 page: int = 1, per_page: int = 50) -> tuple[list[Device], int]:
    """Devices by name, filtered; q searches name, serial, MAC and IP addresses: (page, total)."""
    query = select(Device)
    q = (q or "").strip()
    if q:
        text_of = [Device.name, Device.serial, cast(Device.mac_addresses, String),
                   cast(Device.ip_addresses, String)]
        terms = {q, q.replace("-", ":")}  # a MAC typed the Windows way finds one stored with colons
        query = query.where(or_(*(col.icontains(term, autoescape=True)
                                  for col in text_of for term in terms)))
    group_id = group_filter(group_id)
    if group_id == UNGROUPED:
        query = query.where(Device.group_id.is_(None))
    elif group_id is not None:
        query = query.where(Device.group_id == group_id)
    if status:
        if status not in STATUSES:
            raise DepotError(f"status must be one of: {', '.join(STATUSES)}")
        cutoff = online_cutoff()
        query = query.where({
            "online": Device.last_seen_at >= cutoff,
            "offline": Device.last_seen_at < cutoff,
            "never": Device.last_seen_at.is_(None),
        }[status])
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(func.lower(Device.name), Device.id)
                               .offset((page - 1) * per_page).limit(per_page)).all()
    return list(items), total


def get_device(device_id) -> Device:
    """One device, or NotFound."""
    device = db.session.get(Device, device_id) if isinstance(device_id, int) else None
    if device is None:
        raise NotFound(f"no device {device_id}")
    return device


def device_history(device_id: int, limit: int = 100, user=None) -> list[Deployment]:
    """The device's deployments newest first; for a viewer scoped to sites only those served
    from their sites' DPs (as the Deployments list shows them)."""
    query = select(Deployment).where(Deployment.device_id == device_id)
    if user is not None and user.role == "viewer" and user.sites:
        query = query.where(Deployment.dp_id.in_(select(DistributionPoint.id).where(
            DistributionPoint.site.in_(list(user.sites)))))
    return list(db.session.scalars(
        query.order_by(Deployment.created_at.desc(), Deployment.id.desc()).limit(limit)))


def _group_or_none(group_id) -> DeviceGroup | None:
    if group_id is None or group_id == "":
        return None
    group = db.session.get(DeviceGroup, clean_id(group_id, "group_id"))
    if group is None:
        raise DepotError(f"no group {group_id}; create it first or pick another",
                         code="unknown_group")
    return group


def update_device(actor: Actor, device: Device, changes: dict) -> Device:
    """Rename a device or move it to another group (group_id None: no group)."""
    may_manage(actor)
    refuse_unknown(changes, DEVICE_FIELDS)
    done = {}
    if "name" in changes:
        done["name"] = clean_text(changes["name"], "name", 255)
    if "group_id" in changes:
        group = _group_or_none(changes["group_id"])
        done["group_id"] = group.id if group else None
    for key, value in done.items():
        setattr(device, key, value)
    audit.record(actor, "device.update", target=device.name, device_id=device.id, **done)
    db.session.commit()
    return device


def move_devices(actor: Actor, device_ids, group_id) -> list[Device]:
    """Move many devices to a group (None: no group); all of them or, on any unknown id, none."""
    may_manage(actor)
    if not isinstance(device_ids, list) or not device_ids:
        raise DepotError("choose at least one device (device_ids: a list of ids)")
    ids = list(dict.fromkeys(clean_id(i, "each device id") for i in device_ids))
    group = _group_or_none(group_id)
    devices = db.session.scalars(select(Device).where(Device.id.in_(ids))).all()
    unknown = sorted(set(ids) - {d.id for d in devices})
    if unknown:
        raise UnknownDevices(f"no device{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(str, unknown))}; nothing was moved")
    for device in devices:
        device.group_id = group.id if group else None
    audit.record(actor, "device.move", target=group.name if group else "(no group)",
                 device_ids=ids, group_id=group.id if group else None)
    db.session.commit()
    return sorted(devices, key=lambda d: (d.name.lower(), d.id))


def forget_device(actor: Actor, device: Device) -> None:
    """Forget a device: its token stops working; its deployments stay in the history by name.

    Its unfinished deployments are cancelled, as no agent can report on them any more.
    """
    may_manage(actor)
    now = utcnow()
    db.session.execute(
        update(Deployment)
        .where(Deployment.device_id == device.id, Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES))
        .values(state="cancelled", finished_at=now,
                error=f"the device was forgotten by {actor.label}"))
    db.session.execute(update(Deployment).where(Deployment.device_id == device.id)
                       .values(device_id=None))
    audit.record(actor, "device.forget", target=device.name, device_id=device.id,
                 serial=device.serial)
    db.session.delete(device)
    db.session.commit()


# --- groups ----------------------------------------------------------------------------------

def list_groups() -> list[DeviceGroup]:
    """Every group, by name."""
    return list(db.session.scalars(select(DeviceGroup).order_by(func.lower(DeviceGroup.name))))


def device_counts() -> dict[int | None, int]:
    """How many devices each group holds ({group_id: n}; None: devices in no group)."""
    rows = db.session.execute(select(Device.group_id, func.count()).group_by(Device.group_id))
    return {group_id: n for group_id, n in rows}


def get_group(group_id) -> DeviceGroup:
    """One group, or NotFound."""
    group = db.session.get(DeviceGroup, group_id) if isinstance(group_id, int) else None
    if group is None:
        raise NotFound(f"no group {group_id}")
    return group


def group_dps(group: DeviceGroup) -> tuple[DistributionPoint | None, list[DistributionPoint]]:
    """The group's preferred DP and its fallbacks in order (DPs forgotten since are left out)."""
    ids = list(group.fallback_dp_ids or [])
    found = {dp.id: dp for dp in db.session.scalars(
        select(DistributionPoint).where(DistributionPoint.id.in_(ids)))} if ids else {}
    return group.preferred_dp, [found[i] for i in ids if i in found]


def existing_dp_id(value, field: str) -> int:
    """The id of an existing DP, or DepotError (unknown_dp) naming the field."""
    dp_id = clean_id(value, field)
    if db.session.get(DistributionPoint, dp_id) is None:
        raise DepotError(f"{field}: no distribution point {dp_id}", code="unknown_dp")
    return dp_id


def _clean_group_dps(preferred, fallbacks) -> tuple[int | None, list[int]]:
    preferred = None if preferred in (None, "") else existing_dp_id(preferred, "preferred DP")
    if fallbacks is None:
        fallbacks = []
    if not isinstance(fallbacks, list):
        raise DepotError("fallback_dp_ids must be a list of DP ids, in the order they are tried")
    if len(fallbacks) > MAX_FALLBACKS:
        raise DepotError(f"at most {MAX_FALLBACKS} fallback DPs")
    ids = [existing_dp_id(v, "fallback DP") for v in fallbacks]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        names = ", ".join(db.session.get(DistributionPoint, i).name for i in repeated)
        raise DepotError(f"a DP may appear only once among the fallbacks ({names} is repeated)")
    if preferred is not None and preferred in ids:
        name = db.session.get(DistributionPoint, preferred).name
        raise DepotError(f"{name} is the preferred DP; it need not be a fallback too")
    return preferred, ids


def _unique_group_name(name: str, other_than: int | None = None) -> str:
    clash = db.session.scalars(select(DeviceGroup).where(
        func.lower(DeviceGroup.name) == name.lower())).first()
    if clash is not None and clash.id != other_than:
        raise Conflict(f"a group named {clash.name} already exists")
    return name


def create_group(actor: Actor, name, description="", preferred_dp_id=None,
                 fallback_dp_ids=None) -> DeviceGroup:
    """A new group with an optional preferred DP and ordered fallback DPs."""
    may_manage(actor)
    name = _unique_group_name(clean_text(name, "group name"))
    description = _description(description)
    preferred, fallbacks = _clean_group_dps(preferred_dp_id, fallback_dp_ids)
    group = DeviceGroup(name=name, description=description, preferred_dp_id=preferred,
                        fallback_dp_ids=fallbacks)
    db.session.add(group)
    db.session.flush()
    audit.record(actor, "group.create", target=name, group_id=group.id, preferred_dp_id=preferred,
                 fallback_dp_ids=fallbacks)
    db.session.commit()
    return group


def _description(value) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    return clean_text(value, "description", 500)


def update_group(actor: Actor, group: DeviceGroup, changes: dict) -> DeviceGroup:
    """Change a group's name, description, preferred DP or fallback list (checked together)."""
    may_manage(actor)
    refuse_unknown(changes, GROUP_FIELDS)
    done = {}
    if "name" in changes:
        done["name"] = _unique_group_name(clean_text(changes["name"], "group name"), group.id)
    if "description" in changes:
        done["description"] = _description(changes["description"])
    if "preferred_dp_id" in changes or "fallback_dp_ids" in changes:
        preferred, fallbacks = _clean_group_dps(
            changes.get("preferred_dp_id", group.preferred_dp_id),
            changes.get("fallback_dp_ids", list(group.fallback_dp_ids or [])))
        done.update(preferred_dp_id=preferred, fallback_dp_ids=fallbacks)
    for key, value in done.items():
        setattr(group, key, value)
    audit.record(actor, "group.update", target=group.name, group_id=group.id, **done)
    db.session.commit()
    return group


def delete_group(actor: Actor, group: DeviceGroup) -> int:
    """Delete a group; its devices stay, in no group. Returns how many devices it held."""
    may_manage(actor)
    moved = db.session.execute(update(Device).where(Device.group_id == group.id)
                               .values(group_id=None)).rowcount
    db.session.execute(update(EnrollmentToken).where(EnrollmentToken.group_id == group.id)
                       .values(group_id=None))
    audit.record(actor, "group.delete", target=group.name, group_id=group.id, devices=moved)
    db.session.delete(group)
    db.session.commit()
    return moved
