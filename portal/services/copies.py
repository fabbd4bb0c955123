"""Copy and delete requests: what a person (console, API, CLI) asks to be copied or removed.

Each request is checked here (permissions, assets hashed at central, DPs that may take copies)
and becomes one job per asset and DP (`jobs.start_job`, deduplicated while one runs). What the
job does on a worker is in `copy_job`; how it sends the bytes is in `transfer`.
"""
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.libraries import LIBRARIES
from portal.core.numbers import MAX_ID, is_id
from portal.extensions import db
from portal.models import Asset, DistributionPoint, Job, User, utcnow
from portal.services.actors import Actor
from portal.services.assets import central_dp
from portal.services.distribution_points import visible_dps
from portal.services.jobs import start_job
from portal.services.permissions import can, can_see_dp, require

MAX_ITEMS = 1000


class CopyTarget(NamedTuple):
    """A DP offered on the copy form: `refused` says why it cannot take copies now ("offline since
    10:42 UTC"; its box is shown greyed), `checked` whether its box starts ticked."""

    dp: DistributionPoint
    refused: str | None
    checked: bool


def _since(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    if moment.date() == now.date():
        return f" since {moment:%H:%M} UTC"
    return f" since {moment:%Y-%m-%d %H:%M} UTC"


def copy_refusal(dp: DistributionPoint, now: datetime | None = None) -> str | None:
    """Why the DP cannot take copies now, in a few words ("offline since 10:42 UTC", "disabled",
    "needs reconnecting"), or None when it can. Central is never a target (callers leave it out)."""
    if dp.disabled:
        return "disabled"
    if dp.status == "offline":
        return "offline" + _since(dp.status_changed_at, now or utcnow())
    if dp.status == "needs-auth":
        return "needs reconnecting"
    return None


def _refused(dp: DistributionPoint, why: str) -> Conflict:
    """The clear refusal of a copy to a DP that cannot take it, with what to do about it."""
    if why == "disabled":
        return Conflict(f"{dp.name} is disabled for maintenance: enable it again (Distribution "
                        "points, Edit) to copy to it")
    if why == "needs reconnecting":
        return Conflict(f"{dp.name} needs reconnecting before it takes copies: reconnect it "
                        "(Distribution points, Reconnect), then copy again")
    return Conflict(f"{dp.name} is {why}: copies to it are refused until it answers again "
                    "(Distribution points shows when it is back)")


def copy_targets(user: User, selected: DistributionPoint | None = None) -> list[CopyTarget]:
    """The DPs the copy form offers the user: every visible DP but central, those that cannot
    take copies now with the reason. The selected DP starts ticked, or the only one that can."""
    if not can(user, "copy"):
        return []
    now = utcnow()
    offered = [(dp, copy_refusal(dp, now)) for dp in visible_dps(user) if not dp.is_central]
    open_ = [dp for dp, why in offered if why is None]
    return [CopyTarget(dp, why, why is None and (
        (selected is not None and dp.id == selected.id) or len(open_) == 1))
        for dp, why in offered]


def request_copies(actor: Actor, asset_keys, dp_ids) -> list[Job]:
    """One copy job per (asset, DP); a pair already queued or running gives its job back."""
    require(actor.user, "copy")
    if not isinstance(asset_keys, list) or not asset_keys or not all(
            isinstance(k, str) for k in asset_keys):
        raise DepotError("asset_keys must be a non-empty list of asset keys like Images/Win11.wim")
    if not isinstance(dp_ids, list) or not dp_ids or not all(is_id(i) for i in dp_ids):
        raise DepotError(f"dp_ids must be a non-empty list of distribution point ids (whole "
                         f"numbers from 1 to {MAX_ID})")
    if len(asset_keys) * len(dp_ids) > MAX_ITEMS:
        raise DepotError(f"at most {MAX_ITEMS} copies at once")
    central = central_dp()
    assets = {a.key: a for a in db.session.scalars(
        select(Asset).where(Asset.dp_id == central.id, Asset.key.in_(asset_keys)))}
    for key in asset_keys:
        if key not in assets:
            raise NotFound(f"{key} is not at central")
        if assets[key].digest is None:
            raise Conflict(f"{key} is not hashed at central yet: rescan central first")
    targets = []
    for dp_id in dict.fromkeys(dp_ids):
        dp = db.session.get(DistributionPoint, dp_id)
        if dp is None or not can_see_dp(actor.user, dp):
            raise NotFound(f"no distribution point {dp_id}")
        if dp.is_central:
            raise DepotError("central is where copies come from, not a target")
        why = copy_refusal(dp)
        if why is not None:
            raise _refused(dp, why)
        targets.append(dp)
    started = []
    for dp in targets:
        for key in dict.fromkeys(asset_keys):
            job, _ = start_job("copy", actor, dp_id=dp.id, asset_key=key,
                               dedup_key=f"copy:{dp.id}:{key}")
            started.append(job)
    return started


def library_assets(library) -> list[str]:
    """Every asset of a library at central: what "copy the whole library" copies."""
    if library not in LIBRARIES:
        raise DepotError(f"library must be one of: {', '.join(LIBRARIES)}")
    keys = list(db.session.scalars(select(Asset.key).where(
        Asset.dp_id == central_dp().id, Asset.library == library).order_by(Asset.key)))
    if not keys:
        raise DepotError(f"{library} is empty at central: nothing to copy")
    return keys


def missing_or_outdated(dp: DistributionPoint) -> list[str]:
    """Central's hashed assets that are missing, outdated or failed at the DP."""
    central = central_dp()
    here = dict(db.session.execute(
        select(Asset.key, Asset.digest).where(Asset.dp_id == dp.id)).all())
    return [key for key, digest in db.session.execute(
        select(Asset.key, Asset.digest).where(Asset.dp_id == central.id, Asset.digest.is_not(None))
        .order_by(Asset.key)) if here.get(key, "missing") != digest]


def request_delete(actor: Actor, dp: DistributionPoint, key, confirm_central: bool = False) -> Job:
    """Queue the removal of an asset from a DP; from central only with a second confirmation."""
    require(actor.user, "delete_content")
    if not can_see_dp(actor.user, dp):
        raise NotFound(f"no distribution point {dp.id}")
    if not isinstance(key, str) or not db.session.scalar(
            select(Asset.id).where(Asset.dp_id == dp.id, Asset.key == key)):
        raise NotFound(f"{key} is not at {dp.name}")
    if dp.is_central and not confirm_central:
        raise Conflict(f"deleting {key} from central removes the original: "
                       "confirm it a second time")
    job, _ = start_job("delete", actor, dp_id=dp.id, asset_key=key,
                       dedup_key=f"delete:{dp.id}:{key}")
    return job
