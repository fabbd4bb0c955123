"""Computer Management: devices (online or not, search and filters, rename, move, forget).

Groups are in `device_groups`, boundaries in `boundaries`; what they share in `computers`.
"""
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import String, cast, func, or_, select, update

from portal.core.errors import DepotError, NotFound
from portal.core.numbers import is_id
from portal.extensions import db
from portal.models import Deployment, Device, DeviceGroup, DistributionPoint, utcnow
from portal.models.deployments import ACTIVE_DEPLOYMENT_STATES
from portal.services import audit
from portal.services.agent_flush import with_pending_seen
from portal.services.actors import Actor
from portal.services.computers import (
    clean_id,
    clean_text,
    may_manage,
    refuse_unknown,
    visible_group_ids,
)

STATUSES = ("online", "offline", "never")
UNGROUPED = "none"  # the group filter's value for devices in no group
DEVICE_FIELDS = {"name", "group_id"}


class UnknownDevices(DepotError):
    code, status = "unknown_devices", 400


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
                 page: int = 1, per_page: int = 50, user=None) -> tuple[list[Device], int]:
    """Devices by name, filtered; q searches name, serial, MAC and IP addresses: (page, total).
    A viewer scoped to sites gets only their sites' devices (`computers` says which those are);
    user None: every device. Last seen includes quiet heartbeats not yet flushed; the status
    filter goes by the database's (at most DEPOT_AGENT_SEEN_FLUSH s behind)."""
    query = devices_query(q, group_id, status, user)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(func.lower(Device.name), Device.id)
                               .offset((page - 1) * per_page).limit(per_page)).all()
    return with_pending_seen(list(items)), total


def devices_query(q: str | None = None, group_id=None, status: str | None = None, user=None):
    """The devices `list_devices` lists, unordered (the console's list sorts and pages it; give
    its rows to `with_pending_seen`)."""
    query = select(Device).where(Device.claims_device_id.is_(None))  # claims: `claims`
    groups = visible_group_ids(user)
    if groups is not None:
        query = query.where(Device.group_id.in_(groups))
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
    return query


def get_device(device_id, user=None) -> Device:
    """One device the user may see, or NotFound (a viewer scoped to sites never learns of other
    sites' devices); user None: any device."""
    device = db.session.get(Device, device_id) if is_id(device_id) else None
    if device is None or not device_visible(user, device):
        raise NotFound(f"no device {device_id}")
    return with_pending_seen([device])[0]


def device_visible(user, device: Device) -> bool:
    """True when the user may see the device (its group is at one of a scoped viewer's sites)."""
    groups = visible_group_ids(user)
    return groups is None or device.group_id in groups


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


def _refuse_claim(device: Device) -> None:
    """A pending claim joins no group and takes no other name until an admin decides on it."""
    if device.is_claim:
        raise DepotError(f"{device.name} claims to be {device.claims.name}: approve or refuse "
                         "the claim first", code="claim_pending", status=409)


def update_device(actor: Actor, device: Device, changes: dict) -> Device:
    """Rename a device or move it to another group (group_id None: no group)."""
    may_manage(actor)
    refuse_unknown(changes, DEVICE_FIELDS)
    _refuse_claim(device)
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
        _refuse_claim(device)
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
    for claim in db.session.scalars(select(Device).where(Device.claims_device_id == device.id)):
        audit.record(actor, "device.claim_refuse", target=device.name, device_id=device.id,
                     claim_id=claim.id, serial=claim.serial, ip=claim.remote_ip,
                     reason="the device was forgotten")
        db.session.delete(claim)  # its token is tombstoned on commit too
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
    db.session.delete(device)  # its token is tombstoned on commit (agent_cache's hooks)
    db.session.commit()
