"""Whole numbers and ids from people and programs, read one strict way by the API, the console's
forms and query strings, and the services.

A JSON number must be a JSON integer (not `true`, not `1.5`, not a float that happens to be
whole), within what its column holds; text (a form field, ?connected=) must be ASCII digits
only: no sign, no `1_000`, no `1e3`, no `Infinity`, `NaN` or `sNaN`, and no more digits than the
largest column takes (Python's int() refuses over 4,300 digits with a ValueError of its own).
Anything else is a DepotError (400) whose message names the field and what it takes.
"""
import re
from decimal import Decimal, InvalidOperation

from portal.core.errors import DepotError

MAX_ID = 2 ** 31 - 1  # ids are 32-bit integers in the database: a larger one is no row's
MAX_BIGINT = 2 ** 63 - 1  # BigInteger columns (sizes, bandwidth caps)
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only (str.isdigit takes "²", int() takes "1_0")


def is_id(value) -> bool:
    """Whether `value` is something an id column can hold: an int (not a bool) 1 to MAX_ID."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def whole_number(value, field: str, *, minimum: int = 0, maximum: int = MAX_BIGINT,
                 from_text: bool = False, message: str | None = None) -> int:
    """`value` as an int from `minimum` to `maximum`, or DepotError(message). `from_text`: a
    string of ASCII digits (blanks around them allowed) is read as its number too."""
    if from_text and isinstance(value, str):
        text = value.strip()
        value = int(text) if _DIGITS.fullmatch(text) else None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise DepotError(message or f"{field} must be a whole number from {minimum} to {maximum}")
    return value


def clean_id(value, field: str, *, from_text: bool = False, message: str | None = None) -> int:
    """A database id (1 to MAX_ID), or DepotError naming the field."""
    return whole_number(value, field, minimum=1, maximum=MAX_ID, from_text=from_text,
                        message=message or f"{field} must be an id (a whole number from 1 to "
                                           f"{MAX_ID})")


def id_from_text(value) -> int | None:
    """An id in a query string or link (?connected=7), or None when it is not one: a link that
    was edited by hand shows the page, never an error."""
    try:
        return clean_id(value, "id", from_text=True)
    except DepotError:
        return None


def finite_decimal(text) -> Decimal | None:
    """A decimal number typed by a person (`12.5`), or None when it is not a finite one:
    `NaN`, `sNaN` (whose every comparison raises), `Infinity`, exponents past what the
    decimal context takes, or anything that is not a number."""
    if not isinstance(text, str) or len(text.strip()) > 40:
        return None
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None
