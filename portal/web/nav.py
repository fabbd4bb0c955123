"""Where a person lands after signing in, and which links of the left pane they may follow.

Each link of the left pane is checked against what its target checks, so nobody is shown a
link that answers 403 or 404: the library pages need a DP the person may see (a viewer scoped
to a site without one has none), the branch view a site they may see. Branch staff (viewers)
land on their site's branch view; everyone else on the dashboard.
"""
from flask import url_for

from portal.services import branch

# The pane's links whose targets need more than a signed-in person (the rest need only that).
CONDITIONAL = ("libraries", "branch")


def may_follow(user, visible_dps: list) -> dict[str, bool]:
    """For the links of CONDITIONAL: whether this person may follow it (`visible_dps`: the DPs
    the person sees, as the layout already has them)."""
    return {"libraries": bool(visible_dps),
            "branch": user.role == "viewer" and bool(branch.sites_for(user))}


def home_url(user) -> str:
    """The page a person starts on: a viewer with a site to look at, its branch view; else the
    dashboard."""
    if user.role == "viewer" and branch.sites_for(user):
        return url_for("branch.index")
    return url_for("dashboard.index")


def after_sign_in(user, target: str | None) -> str:
    """Where to go once signed in: the page asked for (`target`, already checked by safe_next),
    unless it is only the console's front door, then the person's own start page."""
    if target and target != url_for("dashboard.index"):
        return target
    return home_url(user)
