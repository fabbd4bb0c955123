"""Distribution points: the central one, listing with status counts, content, the DP switcher."""
import os

from flask import current_app
from sqlalchemy import select

from portal.core.errors import DepotError, NotFound, PermissionDenied
from portal.core.files import ContentRoot
from portal.core.libraries import LIBRARIES
from portal.core.numbers import is_id
from portal.extensions import db
from portal.models import Asset, DistributionPoint, Job, User
from portal.services import jobs
from portal.services.actors import Actor
from portal.services.assets import central_dp
from portal.services.backends import open_storage
from portal.services.permissions import can_see_dp, require

# What health() answers of a DP: the status a health check stored, or `disabled` for maintenance.
HEALTH = ("online", "offline", "needs-auth", "disabled")


def ensure_central() -> DistributionPoint:
    """Create the central DP on first start and its root's library folders; fix a moved root.

    The default root under data/ is created; a configured one must already exist, so that an
    unmounted volume gives a clear message instead of being filled silently.
    """
    root = current_app.config["DEPOT_CENTRAL_ROOT"]
    if current_app.config["DEPOT_CENTRAL_ROOT_IS_DEFAULT"]:
        os.makedirs(root, exist_ok=True)
    ContentRoot(root).ensure_layout()
    dp = db.session.scalars(select(DistributionPoint).where(DistributionPoint.kind == "central")).first()
    if dp is None:
        dp = DistributionPoint(name="Central", kind="central",
                               site=current_app.config["DEPOT_CENTRAL_SITE"], root=root)
        db.session.add(dp)
    dp.root = os.path.abspath(root)
    db.session.commit()
    return dp


def visible_dps(user: User) -> list[DistributionPoint]:
    """The DPs this user may see, central first."""
    dps = db.session.scalars(select(DistributionPoint).order_by(
        (DistributionPoint.kind != "central"), DistributionPoint.name)).all()
    return [dp for dp in dps if can_see_dp(user, dp)]


def get_dp(dp_id, user: User) -> DistributionPoint:
    """One DP the user may see, or NotFound (a viewer never learns of other sites' DPs)."""
    dp = db.session.get(DistributionPoint, dp_id) if is_id(dp_id) else None
    if dp is None or not can_see_dp(user, dp):
        raise NotFound(f"no distribution point {dp_id}")
    return dp


def find_dp_by_name(user: User, name: str) -> DistributionPoint | None:
    """The DP of that name if the user may see it."""
    dp = db.session.scalars(select(DistributionPoint).where(DistributionPoint.name == name)).first()
    return dp if dp is not None and can_see_dp(user, dp) else None


def job_statuses(dp_ids: list[int] | None = None) -> dict[tuple[int, str], tuple[str, str | None]]:
    """What copy jobs say of (DP, asset): `copying` while one is queued or running, `failed` with
    its reason when the last one failed."""
    query = select(Job.dp_id, Job.asset_key, Job.state, Job.error, Job.phase).where(
        Job.kind == "copy").order_by(Job.created_at)
    if dp_ids is not None:
        query = query.where(Job.dp_id.in_(dp_ids))
    latest = {(dp_id, key): (state, error, phase)
              for dp_id, key, state, error, phase in db.session.execute(query)}
    said = {}
    for pair, (state, error, phase) in latest.items():
        if state in ("queued", "running"):
            said[pair] = ("copying", phase)
        elif state == "failed":
            said[pair] = ("failed", error)
    return said


def _overlay(status: str, said: tuple[str, str | None] | None) -> tuple[str, str | None] | None:
    """A job's word on an asset's status: copying always; failed unless it has become current."""
    if said is None or (said[0] == "failed" and status == "current"):
        return None
    return said


def asset_statuses(dp_ids: list[int] | None = None) -> dict[int, dict[str, str]]:
    """Per DP: each asset's status (central's missing ones included, copy jobs applied)."""
    central = central_dp()
    statuses: dict[int, dict[str, str]] = {}
    for dp_id, key, status in db.session.execute(select(Asset.dp_id, Asset.key, Asset.status)):
        statuses.setdefault(dp_id, {})[key] = status
    central_keys = set(statuses.get(central.id, {}))
    for dp_id in db.session.scalars(select(DistributionPoint.id)):
        if dp_id != central.id:
            here = statuses.setdefault(dp_id, {})
            for key in central_keys - set(here):
                here[key] = "missing"
    for (dp_id, key), said in job_statuses(dp_ids).items():
        if dp_id in statuses and (changed := _overlay(statuses[dp_id].get(key, "missing"), said)):
            statuses[dp_id][key] = changed[0]
    if dp_ids is not None:
        return {k: v for k, v in statuses.items() if k in dp_ids}
    return statuses


def status_counts(dp_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """Per DP: how many assets are in each status, `missing` included (central's assets absent)."""
    counts: dict[int, dict[str, int]] = {}
    for dp_id, by_key in asset_statuses(dp_ids).items():
        for status in by_key.values():
            counts.setdefault(dp_id, {})[status] = counts.get(dp_id, {}).get(status, 0) + 1
    return counts


def content(dp: DistributionPoint, library: str | None = None) -> list[dict]:
    """What a DP holds (and, against central, what it lacks), as dicts for the API and the pages."""
    if library is not None and library not in LIBRARIES:
        raise DepotError(f"unknown library {library!r}; one of: {', '.join(LIBRARIES)}")
    query = select(Asset).where(Asset.dp_id == dp.id)
    if library:
        query = query.where(Asset.library == library)
    items = [a.to_dict() for a in db.session.scalars(query.order_by(Asset.library, Asset.name))]
    if not dp.is_central:
        central = central_dp()
        here = {item["key"] for item in items}
        query = select(Asset).where(Asset.dp_id == central.id)
        if library:
            query = query.where(Asset.library == library)
        for asset in db.session.scalars(query):
            if asset.key not in here:
                items.append(dict(asset.to_dict(), status="missing", size=0, digest=None,
                                  modified_at=None, status_reason="not at this distribution point"))
        items.sort(key=lambda i: (i["library"], i["name"]))
        said = job_statuses([dp.id])
        for item in items:
            if changed := _overlay(item["status"], said.get((dp.id, item["key"]))):
                item["status"], item["status_reason"] = changed
    return items


def central_assets_with_status() -> list[dict]:
    """Central's assets, each with its status at every DP (`status_by_dp`)."""
    central = central_dp()
    statuses = asset_statuses()
    return [dict(asset.to_dict(), status_by_dp={
                str(dp_id): by_key.get(asset.key, "missing") for dp_id, by_key in statuses.items()})
            for asset in db.session.scalars(select(Asset).where(Asset.dp_id == central.id)
                                            .order_by(Asset.library, Asset.name))]


def status_matrix(dp_ids: list[int], library: str | None = None,
                  status: str | None = None) -> list[dict]:
    """Rows of the matrix: each of central's assets (and assets only at some DP) with its status
    at each of `dp_ids` and whether central has it; with `status`, only rows where some DP has
    that status."""
    central = central_dp()
    statuses = asset_statuses(list(dict.fromkeys([*dp_ids, central.id])))
    at_central = set(statuses.get(central.id, {}))
    keys = set()  # with no DP column, no rows
    for dp_id in dp_ids:
        keys |= set(statuses.get(dp_id, {}))
    rows = []
    for key in sorted(keys):
        if library and not key.startswith(library + "/"):
            continue
        cells = {dp_id: statuses.get(dp_id, {}).get(key, "missing") for dp_id in dp_ids}
        if status and status not in cells.values():
            continue
        rows.append({"key": key, "cells": cells, "at_central": key in at_central})
    return rows


def request_rescan(dp: DistributionPoint, actor: Actor) -> tuple[Job, bool]:
    """Start a rescan of the DP, or return the one already queued or running."""
    require(actor.user, "rescan")
    if not can_see_dp(actor.user, dp):
        raise PermissionDenied("you may not rescan this distribution point")
    return jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")


def select_dp(user: User, dp_id: int) -> DistributionPoint:
    """Remember which DP's content the library pages show for this user."""
    dp = get_dp(dp_id, user)
    user.selected_dp_id = dp.id
    db.session.commit()
    return dp


def selected_dp(user: User) -> DistributionPoint:
    """The DP the user last picked in the switcher, else central (or their site's first DP)."""
    dp = db.session.get(DistributionPoint, user.selected_dp_id) if user.selected_dp_id else None
    if dp is not None and can_see_dp(user, dp):
        return dp
    visible = visible_dps(user)
    if not visible:
        raise NotFound("no distribution point is visible to you")
    return visible[0]


def location(dp: DistributionPoint) -> str | None:
    """Where a DP keeps its files, as the DP list shows it under the name."""
    if dp.is_central:
        return dp.root
    if dp.kind == "local":
        return dp.url
    settings = dp.settings
    if dp.provider == "s3":
        prefix = settings.get("prefix")
        return settings.get("bucket", "") + (f"/{prefix}" if prefix else "")
    return f"{settings.get('account', '')} · {settings.get('folder', '')}"


def by_consent(dp: DistributionPoint) -> bool:
    """Is the DP connected through a provider's consent page (OneDrive, Drive, Dropbox), so that
    Reconnect can give it access again?"""
    return dp.kind == "cloud" and dp.provider != "s3"


def health(dp: DistributionPoint) -> tuple[str, str | None]:
    """(status, reason) of a DP now; for central, whether its root is usable."""
    if dp.disabled:
        return "disabled", "disabled for maintenance: no copies, no deployments"
    if not dp.is_central:
        return dp.status, dp.status_reason
    try:
        with open_storage(dp) as backend:
            backend.check()
    except DepotError as exc:
        return "offline", exc.message
    return "online", None
