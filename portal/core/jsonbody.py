"""JSON request bodies, read one way by every JSON endpoint: the API and the agent API (through
`portal.web.views.json_body`) and the DP node's /dp/v1/ (`portal.dpnode.routes`).

- A body is JSON only when it says so, `Content-Type: application/json` (or a `+json` type):
  anything else is a 415, so a form or a `text/plain` post (which a browser sends to any site
  without asking first) is never read as JSON.
- It is JSON as RFC 8259 has it: no `NaN`, `Infinity` or `-Infinity`, and no number so large
  that it becomes an infinite float (`1e999`).
- Objects and arrays nest at most MAX_DEPTH levels; json.loads itself raises RecursionError
  near a thousand. Either way the answer is a 400 that says so, never a 500.
- It is an object.

How large a body may be is the app's MAX_CONTENT_LENGTH (413 beyond it, before it is read).
`DepthLimitedLoads`, mixed into each app's JSON provider, puts the depth check under Flask's own
`request.get_json` too (Flask-WTF reads a form from a JSON body with it), so that no reader of a
body can meet a RecursionError. Core imports no Flask: the request is read by the caller.
"""
import json
import math

from portal.core.errors import DepotError

MAX_DEPTH = 32  # Depot's deepest body (an agent's facts) nests 3 levels


class TooDeep(ValueError):
    """JSON nested deeper than it may be (a ValueError, as json.loads's own errors are)."""

    def __init__(self, limit: int):
        super().__init__(f"the JSON is nested more than {limit} levels deep")


class UnsupportedMediaType(DepotError):
    code, status = "unsupported_media_type", 415


class BodyTooLarge(DepotError):
    code, status = "too_large", 413


def too_large_message(limit: int | None) -> str:
    """What a 413 says (the console's and the node's): the limit, and that it is the server's."""
    if not limit:
        return "the request body is too large for this server"
    size = f"{limit // 1024 ** 2} MB" if limit % 1024 ** 2 == 0 else f"{limit:,} bytes"
    return f"the request body is larger than this server takes ({size}); send less at once"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


def deeper_than(value, limit: int) -> bool:
    """Whether objects and arrays in `value` nest more than `limit` levels (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children
                         if isinstance(child, (dict, list)))
    return False


def loads(data, *, strict: bool = True, max_depth: int = MAX_DEPTH):
    """Parse JSON text or bytes; ValueError (TooDeep when nested too deep) if it is not what
    this module takes. `strict=False` lets NaN and Infinity through (Flask's own reader)."""
    extra = {"parse_constant": _refuse_constant, "parse_float": _finite_float} if strict else {}
    try:
        value = json.loads(data, **extra)
    except RecursionError:
        raise TooDeep(max_depth) from None
    if deeper_than(value, max_depth):
        raise TooDeep(max_depth)
    return value


def read_object(request, *, strip_nul: bool = False) -> dict:
    """The JSON object in a Werkzeug request's body (the caller hands the request over: core
    imports no Flask). A body with Content-Length past the limit is a 413 before it is read; a
    chunked one is read up to the limit, and one that reaches it is a 413 as well (Werkzeug
    stops there without saying so)."""
    data = request.get_data()
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise BodyTooLarge(too_large_message(limit))
    return parse_object(data, request.is_json, request.mimetype, strip_nul=strip_nul)


def parse_object(data: bytes, is_json: bool, mimetype: str | None, *,
                 strip_nul: bool = False) -> dict:
    """The JSON object in a request body, or a DepotError that says what is wrong with it:
    empty, not sent as JSON (415), not JSON, too deep, not an object. `is_json` and `mimetype`
    are the request's (Werkzeug's request.is_json and request.mimetype). A NUL character in any
    string is a 400, or with `strip_nul` is taken out (what agents report: a BIOS may pad its
    serial with NULs)."""
    if not data:
        raise DepotError("send a JSON object in the request body")
    if not is_json:
        raise UnsupportedMediaType(f"send the body as JSON, with Content-Type: application/json "
                                   f"(this request sent {mimetype or 'no Content-Type'})")
    try:
        body = loads(data)
    except TooDeep as exc:
        raise DepotError(f"the request body is not accepted: {exc}", code="too_deep") from None
    except ValueError as exc:
        raise DepotError(f"the request body is not valid JSON: {_reason(exc)}",
                         code="malformed_json") from None
    if not isinstance(body, dict):
        raise DepotError("the request body must be a JSON object")
    if holds_nul(body):
        if not strip_nul:
            raise DepotError(NUL_MESSAGE, code="nul_character")
        body = without_nul(body)
    return body


NUL_MESSAGE = ("the request holds a NUL character (\\u0000), which no Depot field takes "
               "(PostgreSQL cannot store it)")


def without_nul(value):
    """A parsed JSON value with every NUL character taken out of its strings (keys included);
    nested at most MAX_DEPTH levels, as `loads` made sure."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def holds_nul(value) -> bool:
    """Whether a NUL character is in any string (key or value) of a parsed JSON value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _reason(exc: ValueError) -> str:
    """json's own words (with line and column) for a syntax error, a short phrase otherwise."""
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if "integer string conversion" in str(exc):  # Python's limit of 4,300 digits
        return "a number has too many digits"
    return str(exc)[:200]


class DepthLimitedLoads:
    """Mixed in before Flask's DefaultJSONProvider (the console's and the node's apps): its
    loads, behind request.get_json, refuses nesting past MAX_DEPTH with a ValueError, which
    Werkzeug answers with a 400, where json.loads would raise RecursionError (a 500)."""

    def loads(self, s, **kwargs):
        if kwargs:
            return super().loads(s, **kwargs)
        return loads(s, strict=False)
