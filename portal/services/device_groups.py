"""Computer Management: device groups, each with a preferred DP and ordered fallback DPs."""
from sqlalchemy import func, select, update

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.numbers import is_id
from portal.extensions import db
from portal.models import Device, DeviceGroup, DistributionPoint, EnrollmentToken
from portal.services import audit
from portal.services.actors import Actor
from portal.services.computers import (
    clean_text,
    existing_dp_id,
    may_manage,
    refuse_unknown,
    visible_group_ids,
)

MAX_FALLBACKS = 10
GROUP_FIELDS = {"name", "description", "preferred_dp_id", "fallback_dp_ids"}


def list_groups(user=None) -> list[DeviceGroup]:
    """Every group the user may see (a viewer scoped to sites: their sites' groups, as
    `computers` decides), by name; user None: every group."""
    query = select(DeviceGroup).order_by(func.lower(DeviceGroup.name))
    visible = visible_group_ids(user)
    if visible is not None:
        query = query.where(DeviceGroup.id.in_(visible))
    return list(db.session.scalars(query))


def device_counts(user=None) -> dict[int | None, int]:
    """How many devices each group holds ({group_id: n}; None: devices in no group), pending
    claims left out. For a viewer scoped to sites only their groups, and no count of devices in
    no group (those are at no site)."""
    rows = db.session.execute(select(Device.group_id, func.count())
                              .where(Device.claims_device_id.is_(None))
                              .group_by(Device.group_id))
    counts = {group_id: n for group_id, n in rows}
    visible = visible_group_ids(user)
    if visible is not None:
        counts = {group_id: n for group_id, n in counts.items() if group_id in visible}
    return counts


def get_group(group_id, user=None) -> DeviceGroup:
    """One group the user may see, or NotFound; user None: any group."""
    group = db.session.get(DeviceGroup, group_id) if is_id(group_id) else None
    if group is not None:
        visible = visible_group_ids(user)
        if visible is not None and group.id not in visible:
            group = None
    if group is None:
        raise NotFound(f"no group {group_id}")
    return group


def group_dps(group: DeviceGroup) -> tuple[DistributionPoint | None, list[DistributionPoint]]:
    """The group's preferred DP and its fallbacks in order (DPs forgotten since are left out)."""
    ids = list(group.fallback_dp_ids or [])
    found = {dp.id: dp for dp in db.session.scalars(
        select(DistributionPoint).where(DistributionPoint.id.in_(ids)))} if ids else {}
    return group.preferred_dp, [found[i] for i in ids if i in found]


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
