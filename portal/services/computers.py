"""Computer Management, what devices, groups and boundaries share: who may manage them, and how
a person's input is cleaned (names, ids, a DP referred to, fields not known).
"""
from portal.core import numbers
from portal.core.errors import DepotError
from portal.core.names import clean_name
from portal.core.numbers import MAX_ID  # noqa: F401 (services import it from here)
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services.actors import Actor
from portal.services.permissions import require


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
