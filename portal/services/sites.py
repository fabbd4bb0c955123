"""Sites: the places Depot knows, as named by its distribution points.

A site is a DP's `site`; a group and a boundary are at the site of the DP they name (a group's
preferred DP, else its first fallback; a boundary's DP), so the DPs' sites are every site Depot
knows. Where a person names a site (a viewer's scope), it is one of these, so that "Seatle" is
refused with the sites there are instead of scoping someone to nothing.
"""
import difflib

from sqlalchemy import select

from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import DistributionPoint


class UnknownSite(DepotError):
    code = "unknown_site"


def known_sites() -> list[str]:
    """Every site Depot knows (the sites its DPs name), sorted, each once, blanks left out."""
    return sorted({site for site in db.session.scalars(select(DistributionPoint.site).where(
        DistributionPoint.site != "")) if site})


def refuse_unknown(sites: list[str], keep: list[str] | tuple = ()) -> list[str]:
    """`sites` unchanged when Depot knows each of them (or the person already had it: `keep`, so
    a site whose DP went away can stay on an account until someone takes it off); else
    UnknownSite naming the first unknown one, the nearest known name and the known ones."""
    known = known_sites()
    for site in sites:
        if site in known or site in keep:
            continue
        near = difflib.get_close_matches(site, known, n=1)
        hint = f" Did you mean {near[0]}?" if near else ""
        listed = ", ".join(known) if known else "none yet: give a distribution point a site first"
        raise UnknownSite(f"{site} is not a site Depot knows.{hint} Sites come from the "
                          f"distribution points; they are: {listed}.")
    return sites
