"""The dashboard's question, "is anything wrong?": DPs offline, to reconnect, disabled or low on
space, copies failing, devices online and offline, deployments running and failed in the last
24 hours, claims to decide; each for what the user may see, in a handful of aggregate queries.

It answers with rows and counts; the page links each to where it is put right.
"""
from datetime import timedelta

from flask import current_app
from sqlalchemy import case, func, select

from portal.extensions import db
from portal.models import Deployment, Device, DistributionPoint, User, utcnow
from portal.models.deployments import ACTIVE_DEPLOYMENT_STATES
from portal.services import distribution_points as dps
from portal.services.computers import visible_group_ids
from portal.services.devices import online_cutoff
from portal.services.permissions import can, scoped_sites

RECENT = timedelta(hours=24)  # "failed in the last 24 h"
FAILED_SHOWN = 5  # the newest failed deployments listed by name; the rest behind a link


def free_percent(dp: DistributionPoint) -> int | None:
    """The percent of the DP's disk that is free, or None while free or total space is unknown."""
    if dp.free_bytes is None or not dp.total_bytes:
        return None
    return int(dp.free_bytes * 100 // dp.total_bytes)


def dp_rows(user: User, visible: list[DistributionPoint],
            counts: dict[int, dict[str, int]]) -> list[dict]:
    """Each DP with its health and why, its free space in percent (None: unknown) and whether
    that is low, how many of its copies fail, whether the user may edit it (a DP node, for
    admins), and whether what it holds can be confirmed now (it answers)."""
    low_below = current_app.config["DEPOT_LOW_SPACE_PERCENT"]
    rows = []
    for dp in visible:
        health, reason = dps.health(dp)
        percent = free_percent(dp)
        rows.append({"dp": dp, "health": health, "reason": reason, "counts": counts.get(dp.id, {}),
                     "free_percent": percent,
                     "low_space": percent is not None and percent < low_below,
                     "failing": counts.get(dp.id, {}).get("failed", 0),
                     "edit": can(user, "manage_dps") and dp.kind == "local",
                     "confirmed": health == "online"})
    return rows


def device_counts(user: User) -> dict[str, int]:
    """How many of the devices the user may see are online, offline and never seen (claims
    aside), by the database's last-seen times as Computer Management's status filter counts
    them; and `total`."""
    cutoff = online_cutoff()
    query = select(func.count(case((Device.last_seen_at >= cutoff, 1))),
                   func.count(case((Device.last_seen_at < cutoff, 1))),
                   func.count(case((Device.last_seen_at.is_(None), 1)))
                   ).where(Device.claims_device_id.is_(None))
    groups = visible_group_ids(user)
    if groups is not None:
        query = query.where(Device.group_id.in_(groups))
    online, offline, never = db.session.execute(query).one()
    return {"online": online, "offline": offline, "never": never,
            "total": online + offline + never}


def pending_claims(user: User) -> int:
    """How many enrollments claiming a known device wait for a decision: for admins, who alone
    decide (0 for everyone else)."""
    if not can(user, "manage_devices") or scoped_sites(user) is not None:
        return 0
    return db.session.scalar(select(func.count()).where(Device.claims_device_id.is_not(None)))


def deployment_summary(user: User) -> dict:
    """Deployments from the DPs the user may see: how many run now, how many failed in the last
    24 hours, and the newest of those failures."""
    since = utcnow() - RECENT
    failed_recently = (Deployment.state == "failed") & (
        func.coalesce(Deployment.finished_at, Deployment.created_at) >= since)
    scope = []
    sites = scoped_sites(user)
    if sites is not None:
        scope.append(Deployment.dp_id.in_(select(DistributionPoint.id).where(
            DistributionPoint.site.in_(sites))))
    running, failed = db.session.execute(select(
        func.count(case((Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES), 1))),
        func.count(case((failed_recently, 1)))).where(*scope)).one()
    newest = list(db.session.scalars(select(Deployment).where(failed_recently, *scope).order_by(
        func.coalesce(Deployment.finished_at, Deployment.created_at).desc(), Deployment.id.desc())
        .limit(FAILED_SHOWN))) if failed else []
    return {"running": running, "failed": failed, "failed_items": newest}


def overview(user: User, visible: list[DistributionPoint],
             counts: dict[int, dict[str, int]]) -> dict:
    """Everything the dashboard says is wrong (or that nothing is), for the DPs the user sees."""
    rows = dp_rows(user, visible, counts)
    dp_problems = {
        "offline": [r for r in rows if r["health"] == "offline"],
        "needs_auth": [r for r in rows if r["health"] == "needs-auth"],
        "disabled": [r for r in rows if r["health"] == "disabled"],
        "low_space": [r for r in rows if r["low_space"]],
    }
    failing = [r for r in rows if r["failing"]]
    deployments = deployment_summary(user)
    claims = pending_claims(user)
    troubled = {r["dp"].id for found in dp_problems.values() for r in found}
    return {
        "dp_rows": rows, "dp_problems": dp_problems, "troubled_dps": len(troubled),
        "copies_failing": failing, "copies_failing_total": sum(r["failing"] for r in failing),
        "devices": device_counts(user), "claims": claims, "deployments": deployments,
        "low_space_percent": current_app.config["DEPOT_LOW_SPACE_PERCENT"],
        "all_well": not troubled and not failing and not deployments["failed"] and not claims,
    }
