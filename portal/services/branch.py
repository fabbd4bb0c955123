"""The branch view: one site's DPs (health, free space, what is behind central) and the
deployments served from them, for branch staff. Read only."""
from sqlalchemy import select

from portal.core.errors import NotFound
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import distribution_points as dps
from portal.services.deployments import list_deployments
from portal.services.permissions import can_see_dp
from portal.services.sites import known_sites

# What "out of date compared with central" covers, worst first.
BEHIND = ("failed", "missing", "outdated", "copying", "unverified")
# Why what a DP holds cannot be confirmed now (only a DP that answers can say it is current).
UNCONFIRMED = {"offline": "it is offline", "needs-auth": "it needs to be reconnected",
               "disabled": "it is disabled for maintenance"}


def sites_for(user) -> list[str]:
    """The sites this user may look at: a scoped viewer's own, else every site a DP names."""
    return [s for s in known_sites() if user.role != "viewer" or not user.sites or s in user.sites]


def site_overview(user, site: str | None = None, *, deployments_limit: int = 50) -> dict:
    """One site's DPs with health, free space, counts per status, what is behind central and, when
    the DP is not online, why that cannot be confirmed now (`unconfirmed`); and the newest
    deployments from those DPs; NotFound for a site the user may not see."""
    sites = sites_for(user)
    if not sites:
        raise NotFound("no site is visible to you: ask an admin to give your account a site")
    site = site or sites[0]
    if site not in sites:
        raise NotFound(f"no site {site!r}")
    here = [dp for dp in db.session.scalars(select(DistributionPoint).where(
        DistributionPoint.site == site).order_by(DistributionPoint.name)) if can_see_dp(user, dp)]
    statuses = dps.asset_statuses([dp.id for dp in here]) if here else {}
    rows = []
    for dp in here:
        by_key = statuses.get(dp.id, {})
        counts: dict[str, int] = {}
        for status in by_key.values():
            counts[status] = counts.get(status, 0) + 1
        behind = sorted(((key, status) for key, status in by_key.items() if status in BEHIND),
                        key=lambda ks: (BEHIND.index(ks[1]), ks[0]))
        health, reason = dps.health(dp)
        rows.append({"dp": dp, "health": health, "reason": reason, "counts": counts,
                     "behind": behind,
                     "unconfirmed": None if health == "online" else UNCONFIRMED.get(
                         health, "it does not answer")})
    items, total = list_deployments(user, site=site, per_page=deployments_limit)
    return {"site": site, "sites": sites, "dps": rows, "deployments": items, "total": total,
            "any_active": any(d.is_active for d in items)}
