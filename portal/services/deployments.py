"""Deployments: create (DP chosen by the selection rules, digests pinned), cancel, list.

What the deploy form offers and its preview (which DP would serve each device, and why) are in
`deployment_preview`; what agents ask about their deployments is in `agent_deployments`.
"""
import uuid

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.numbers import is_id
from portal.extensions import db
from portal.models import (
    Asset,
    Deployment,
    Device,
    DeviceGroup,
    DistributionPoint,
    InventoryFile,
    utcnow,
)
from portal.models.deployments import ACTIVE_DEPLOYMENT_STATES, DEPLOYMENT_STATES
from portal.services import agent_cache, audit
from portal.services.actors import Actor
from portal.services.assets import central_dp
from portal.services.computers import MAX_ID
from portal.services.permissions import can_see_dp, require
from portal.services.selection import Snapshot

MAX_DEVICES = 5000
# Which library each part of a deployment comes from.
PARTS = (("image", "Images"), ("platform_pack", "Platform Packs"),
         ("application_packs", "Application Packs"), ("answer_file", "Answer Files"))


class DpNotEligible(Conflict):
    """No DP (or not the one asked for) can serve every asset; `reasons` says why, one a line."""

    code = "dp_not_eligible"

    def __init__(self, headline: str, reasons: list[str]):
        super().__init__(f"{headline}: {'; '.join(reasons)}")
        self.headline = headline
        self.reasons = list(reasons)
        self.extra = {"reasons": self.reasons}


def pin_assets(dp_id: int, keys: list[str]) -> list[dict]:
    """What a deployment of `keys` from this DP must get, as the DP holds it now:
    [{key, digest, files: [{path, size, sha256}]}]; Conflict when a key is not there hashed."""
    pinned = []
    for key in keys:
        asset = db.session.scalars(
            select(Asset).where(Asset.dp_id == dp_id, Asset.key == key)).first()
        if asset is None or not asset.digest:
            raise Conflict(f"{key} is not at this DP (or not hashed yet)")
        rows = db.session.scalars(
            select(InventoryFile)
            .where(InventoryFile.dp_id == dp_id,
                   or_(InventoryFile.path == key, InventoryFile.path.startswith(key + "/",
                                                                                autoescape=True)))
            .order_by(InventoryFile.path)
        ).all()
        if any(not row.sha256 for row in rows):
            raise Conflict(f"{key} is not hashed yet at this DP")
        pinned.append({"key": key, "digest": asset.digest,
                       "files": [{"path": r.path, "size": r.size, "sha256": r.sha256} for r in rows]})
    return pinned


# --- what to deploy, to whom -----------------------------------------------------------------

def deployment_keys(image, platform_pack=None, application_packs=(), answer_file=None) -> list[str]:
    """The asset keys of a deployment, each checked to be of its library and at central."""
    if application_packs is None:
        application_packs = []
    if isinstance(application_packs, str) or not isinstance(application_packs, (list, tuple)):
        raise DepotError("application_packs must be a list of asset keys like "
                         "Application Packs/Office")
    values = {"image": image, "platform_pack": platform_pack or None,
              "application_packs": [p for p in application_packs if p],
              "answer_file": answer_file or None}
    if not image:
        raise DepotError("choose an image to deploy (an asset of Images/)")
    keys = []
    for field, library in PARTS:
        given = values[field]
        # Only Application Packs come as a list; a list elsewhere is refused as not a key.
        for key in (given if field == "application_packs" else [given] if given else []):
            if not isinstance(key, str) or not key.startswith(library + "/") or \
                    len(key) == len(library) + 1:
                raise DepotError(f"{field.replace('_', ' ')} must be an asset of {library}/ "
                                 f"(like {library}/name), not {key!r}")
            keys.append(key)
    keys = list(dict.fromkeys(keys))
    central = central_dp()
    found = dict(db.session.execute(select(Asset.key, Asset.digest).where(
        Asset.dp_id == central.id, Asset.key.in_(keys))).all())
    for key in keys:
        if key not in found:
            raise NotFound(f"{key} is not at central")
        if found[key] is None:
            raise Conflict(f"{key} is not hashed at central yet: rescan central first")
    return keys


def target_devices(device_ids=None, group_id=None) -> tuple[list[Device], DeviceGroup | None]:
    """The devices a deployment goes to (given by id, or a whole group) and the group if one."""
    if (device_ids is None or device_ids == []) == (group_id is None):
        raise DepotError("choose the devices (device_ids) or one group (group_id) to deploy to, "
                         "not both")
    if group_id is not None:
        if not isinstance(group_id, int) or isinstance(group_id, bool) or \
                not 1 <= group_id <= MAX_ID:
            raise DepotError("group_id must be a group's id")
        group = db.session.get(DeviceGroup, group_id)
        if group is None:
            raise NotFound(f"no group {group_id}")
        devices = list(db.session.scalars(select(Device).where(Device.group_id == group.id,
                                                             Device.claims_device_id.is_(None))
                                          .order_by(Device.name).limit(MAX_DEVICES + 1)))
        if not devices:
            raise DepotError(f"group {group.name} has no devices yet")
        if len(devices) > MAX_DEVICES:
            raise DepotError(f"at most {MAX_DEVICES} devices at once")
        return devices, group
    if not isinstance(device_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_ID
            for i in device_ids):
        raise DepotError("device_ids must be a list of device ids")
    ids = list(dict.fromkeys(device_ids))
    if len(ids) > MAX_DEVICES:
        raise DepotError(f"at most {MAX_DEVICES} devices at once")
    found = {d.id: d for d in db.session.scalars(select(Device).where(Device.id.in_(ids)))}
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise NotFound(f"no device {', '.join(map(str, unknown))}")
    claims = [found[i].name for i in ids if found[i].is_claim]
    if claims:
        raise DepotError(f"{', '.join(claims)}: a pending claim on a known device gets no "
                         "deployment; approve or refuse it in Computer Management first",
                         code="claim_pending", status=409)
    return [found[i] for i in ids], None


def _explicit_dp(actor: Actor, dp_id) -> DistributionPoint:
    if not isinstance(dp_id, int) or isinstance(dp_id, bool) or not 1 <= dp_id <= MAX_ID:
        raise DepotError("dp_id must be a distribution point's id (or left out: the rules choose)")
    dp = db.session.get(DistributionPoint, dp_id)
    if dp is None or not can_see_dp(actor.user, dp):
        raise NotFound(f"no distribution point {dp_id}")
    return dp


def unfinished(devices: list[Device]) -> dict[int, Deployment]:
    """The unfinished deployment of each of these devices that has one: {device_id: deployment}."""
    ids = [d.id for d in devices]
    return {d.device_id: d for d in db.session.scalars(select(Deployment).where(
        Deployment.device_id.in_(ids), Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES)))}


# --- create, cancel --------------------------------------------------------------------------

def create_deployments(actor: Actor, *, device_ids=None, group_id=None, image,
                       platform_pack=None, application_packs=(), answer_file=None,
                       dp_id=None) -> list[Deployment]:
    """One deployment per device (one batch), each from the DP the rules choose (or `dp_id`),
    with the digests of what that DP holds now pinned; 409 with the reasons when no DP can."""
    require(actor.user, "deploy")
    keys = deployment_keys(image, platform_pack, application_packs, answer_file)
    devices, group = target_devices(device_ids, group_id)
    busy = unfinished(devices)
    if busy:
        names = [f"{d.device_name} (deployment #{d.id}, {d.state})" for d in busy.values()]
        raise Conflict(f"{len(names)} device(s) already have an unfinished deployment: "
                       f"{', '.join(names[:10])}{' …' if len(names) > 10 else ''}; "
                       "cancel it or wait for it to finish", code="deployment_active")
    snapshot = Snapshot(keys)
    explicit = _explicit_dp(actor, dp_id) if dp_id is not None else None
    if explicit is not None:
        reasons = snapshot.eligibility(explicit)
        if reasons:
            raise DpNotEligible(f"{explicit.name} cannot serve this deployment", reasons)
    choices = {}
    for device in devices:
        if explicit is not None:
            choices[device.id] = (explicit, f"chosen by {actor.label}")
            continue
        choice = snapshot.choose(device)
        if choice.dp is None:
            raise DpNotEligible(f"no distribution point can serve {device.name}",
                                choice.reasons)
        choices[device.id] = (choice.dp, choice.reason)
    pinned, batch = {}, str(uuid.uuid4())
    rows = []
    for device in devices:
        dp, reason = choices[device.id]
        if dp.id not in pinned:
            pinned[dp.id] = pin_assets(dp.id, keys)
        assets = pinned[dp.id]
        rows.append(Deployment(
            batch_id=batch, device_id=device.id, device_name=device.name,
            group_id=group.id if group else device.group_id, dp_id=dp.id, dp_name=dp.name,
            selection_reason=reason[:500], image=image, platform_pack=platform_pack or None,
            application_packs=[k for k in keys if k.startswith("Application Packs/")],
            answer_file=answer_file or None, assets=assets, state="pending",
            bytes_total=sum(f["size"] for a in assets for f in a["files"]),
            requested_by_id=actor.user_id))
    db.session.add_all(rows)
    audit.record(actor, "deployment.create", f"batch {batch}", image=image, devices=len(rows),
                 group=group.name if group else None, dp_ids=sorted(pinned),
                 assets=[{"key": a["key"], "digest": a["digest"]} for a in next(iter(pinned.values()))])
    try:
        db.session.commit()
    except IntegrityError:
        # Another request started a deployment to one of these devices in between.
        db.session.rollback()
        raise Conflict("a device got another deployment meanwhile; look at its deployments and "
                       "try again", code="deployment_active") from None
    return rows


def get_deployment(user, deployment_id) -> Deployment:
    """One deployment the user may see (a viewer scoped to sites sees only theirs)."""
    found = db.session.get(Deployment, deployment_id) if is_id(deployment_id) else None
    if found is None or not _visible(user, found):
        raise NotFound(f"no deployment {deployment_id}")
    return found


def _visible(user, deployment: Deployment) -> bool:
    if user.role != "viewer" or not user.sites:
        return True
    return deployment.dp is not None and can_see_dp(user, deployment.dp)


def cancel_deployment(actor: Actor, deployment_id) -> Deployment:
    """Cancel a pending deployment at once; ask a downloading or applying one to stop (its agent
    reports `cancelled`); 409 for one that has finished."""
    require(actor.user, "cancel_deployment")
    deployment = get_deployment(actor.user, deployment_id)
    # One conditional UPDATE, so an agent starting the download at the same moment is not lost.
    now = utcnow()
    done = db.session.execute(update(Deployment).where(
        Deployment.id == deployment.id, Deployment.state == "pending").values(
        state="cancelled", cancel_requested=True, finished_at=now,
        phase=f"cancelled by {actor.label} before it started"[:200])).rowcount
    if not done:
        done = db.session.execute(update(Deployment).where(
            Deployment.id == deployment.id,
            Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES)).values(cancel_requested=True)).rowcount
    if not done:
        db.session.rollback()
        db.session.refresh(deployment)
        raise Conflict(f"deployment #{deployment.id} has already {deployment.state}: "
                       "nothing to cancel", code="deployment_finished")
    audit.record(actor, "deployment.cancel", f"deployment {deployment.id}",
                 device=deployment.device_name)
    agent_cache.work_changed_on_commit(db.session, [deployment.device_id])
    db.session.commit()
    db.session.refresh(deployment)
    return deployment


# --- lists -----------------------------------------------------------------------------------

def list_deployments(user, *, state=None, device_id=None, group_id=None, batch_id=None,
                     dp_id=None, site=None, active=None, page: int = 1,
                     per_page: int = 50) -> tuple[list[Deployment], int]:
    """Deployments the user may see, newest first, filtered; (items, total)."""
    query = deployments_query(user, state=state, device_id=device_id, group_id=group_id,
                              batch_id=batch_id, dp_id=dp_id, site=site, active=active)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Deployment.created_at.desc(), Deployment.id.desc())
                               .offset((page - 1) * per_page).limit(per_page)).all()
    return list(items), total


def deployments_query(user, *, state=None, device_id=None, group_id=None, batch_id=None,
                      dp_id=None, site=None, active=None):
    """The deployments the user may see, filtered, unordered (the console's list sorts and pages
    it)."""
    query = select(Deployment)
    if state:
        if state not in DEPLOYMENT_STATES:
            raise DepotError(f"unknown state {state!r}; one of: {', '.join(DEPLOYMENT_STATES)}")
        query = query.where(Deployment.state == state)
    if active:
        query = query.where(Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES))
    for column, value in ((Deployment.device_id, device_id), (Deployment.group_id, group_id),
                          (Deployment.batch_id, batch_id), (Deployment.dp_id, dp_id)):
        if value is not None and value != "":
            query = query.where(column == value)
    sites = None
    if user.role == "viewer" and user.sites:
        sites = list(user.sites)
    if site:
        sites = [site] if sites is None or site in sites else []
    if sites is not None:
        query = query.where(Deployment.dp_id.in_(
            select(DistributionPoint.id).where(DistributionPoint.site.in_(sites))))
    return query
