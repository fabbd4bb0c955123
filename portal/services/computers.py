"""Computer Management, what devices, groups and boundaries share: who may manage them, which
site each belongs to (what a viewer scoped to sites sees), and how a person's input is cleaned
(names, ids, a DP referred to, fields not known).

Which site a device, group or boundary belongs to:
- a boundary belongs to the site of its DP;
- a group belongs to the site of its home DP: its preferred DP or, without one, its first
  fallback (the DP its devices download from when no boundary places them elsewhere);
- a device belongs to the site of its group.
Devices in no group and groups with no DP belong to no site: only people who see every site see
them. A device's addresses are deliberately not matched against boundaries for this: they are
whatever its agent last reported, so a laptop passing through another site's subnet (or an agent
reporting any address it likes) would otherwise show itself, serial and MACs included, to that
site's viewers. The group is the placement an admin chose.
"""
from sqlalchemy import select

from portal.core import numbers
from portal.core.errors import DepotError
from portal.core.names import clean_name
from portal.core.numbers import MAX_ID  # noqa: F401 (services import it from here)
from portal.extensions import db
from portal.models import DeviceGroup, DistributionPoint
from portal.services.actors import Actor
from portal.services.permissions import require, scoped_sites


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
    """A database id given by a person or a program: a positive whole number (not a bool, not
    past the id column), as a JSON number or a string of digits."""
    return numbers.clean_id(value, field, from_text=True,
                            message=f"{field} must be a positive whole number (an id)")


def existing_dp_id(value, field: str) -> int:
    """The id of an existing DP, or DepotError (unknown_dp) naming the field."""
    dp_id = clean_id(value, field)
    if db.session.get(DistributionPoint, dp_id) is None:
        raise DepotError(f"{field}: no distribution point {dp_id}", code="unknown_dp")
    return dp_id


def home_dp_id(group: DeviceGroup) -> int | None:
    """The DP that decides a group's site: its preferred DP, else its first fallback."""
    if group.preferred_dp_id is not None:
        return group.preferred_dp_id
    fallbacks = list(group.fallback_dp_ids or [])
    return fallbacks[0] if fallbacks else None


def site_dp_ids(user) -> set[int] | None:
    """The ids of the DPs at the user's sites; None when the user sees every site."""
    sites = scoped_sites(user)
    if sites is None:
        return None
    return set(db.session.scalars(select(DistributionPoint.id).where(
        DistributionPoint.site.in_(sites))))


def visible_group_ids(user) -> set[int] | None:
    """The ids of the groups at the user's sites (see the module's rule); None: every group."""
    dp_ids = site_dp_ids(user)
    if dp_ids is None:
        return None
    return {group.id for group in db.session.scalars(select(DeviceGroup))
            if home_dp_id(group) in dp_ids}
