"""Boundaries: IP subnets (IPv4 or IPv6, in CIDR form) whose devices download from one DP."""
import ipaddress

from sqlalchemy import func, select

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.numbers import is_id
from portal.extensions import db
from portal.models import Boundary
from portal.services import audit
from portal.services.actors import Actor
from portal.services.computers import (
    clean_text,
    existing_dp_id,
    may_manage,
    refuse_unknown,
    site_dp_ids,
)

BOUNDARY_FIELDS = {"name", "cidr", "dp_id"}


def clean_cidr(value) -> str:
    """A subnet in CIDR form (IPv4 or IPv6), normalised: '10.2.0.0/16'; a message when it is not."""
    if not isinstance(value, str) or not value.strip():
        raise DepotError("give the subnet in CIDR form, e.g. 10.2.0.0/16 or 2001:db8:1::/48")
    value = value.strip()
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        pass
    try:
        meant = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise DepotError(f"{value!r} is not a subnet in CIDR form (IPv4 or IPv6), "
                         "e.g. 10.2.0.0/16 or 2001:db8:1::/48") from None
    raise DepotError(f"{value} has host bits set; the network is {meant} "
                     f"(did you mean {meant}?)", code="host_bits_set")


def list_boundaries(user=None) -> list[Boundary]:
    """Every boundary the user may see (a viewer scoped to sites: those whose DP is at their
    sites), by name then subnet; user None: every boundary."""
    query = select(Boundary).order_by(func.lower(Boundary.name), Boundary.cidr)
    dp_ids = site_dp_ids(user)
    if dp_ids is not None:
        query = query.where(Boundary.dp_id.in_(dp_ids))
    return list(db.session.scalars(query))


def get_boundary(boundary_id, user=None) -> Boundary:
    """One boundary the user may see, or NotFound; user None: any boundary."""
    boundary = db.session.get(Boundary, boundary_id) if is_id(boundary_id) else None
    if boundary is not None:
        dp_ids = site_dp_ids(user)
        if dp_ids is not None and boundary.dp_id not in dp_ids:
            boundary = None
    if boundary is None:
        raise NotFound(f"no boundary {boundary_id}")
    return boundary


def _unique_cidr(cidr: str, other_than: int | None = None) -> str:
    clash = db.session.scalars(select(Boundary).where(Boundary.cidr == cidr)).first()
    if clash is not None and clash.id != other_than:
        raise Conflict(f"the subnet {cidr} already has a boundary ({clash.name})")
    return cidr


def create_boundary(actor: Actor, name, cidr, dp_id) -> Boundary:
    """A subnet whose devices download from one DP."""
    may_manage(actor)
    name = clean_text(name, "boundary name")
    cidr = _unique_cidr(clean_cidr(cidr))
    dp_id = existing_dp_id(dp_id, "DP")
    boundary = Boundary(name=name, cidr=cidr, dp_id=dp_id)
    db.session.add(boundary)
    db.session.flush()
    audit.record(actor, "boundary.create", target=cidr, name=name, dp_id=dp_id)
    db.session.commit()
    return boundary


def update_boundary(actor: Actor, boundary: Boundary, changes: dict) -> Boundary:
    """Change a boundary's name, subnet or DP."""
    may_manage(actor)
    refuse_unknown(changes, BOUNDARY_FIELDS)
    done = {}
    if "name" in changes:
        done["name"] = clean_text(changes["name"], "boundary name")
    if "cidr" in changes:
        done["cidr"] = _unique_cidr(clean_cidr(changes["cidr"]), boundary.id)
    if "dp_id" in changes:
        done["dp_id"] = existing_dp_id(changes["dp_id"], "DP")
    for key, value in done.items():
        setattr(boundary, key, value)
    audit.record(actor, "boundary.update", target=boundary.cidr, boundary_id=boundary.id, **done)
    db.session.commit()
    return boundary


def delete_boundary(actor: Actor, boundary: Boundary) -> None:
    """Remove a boundary; its devices fall back to their group's DPs."""
    may_manage(actor)
    audit.record(actor, "boundary.delete", target=boundary.cidr, name=boundary.name,
                 dp_id=boundary.dp_id)
    db.session.delete(boundary)
    db.session.commit()
