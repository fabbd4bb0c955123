"""How large and how deep a request's body may be, for the console, the API and the agent API.

`DEPOT_MAX_BODY_MB` (2 by default) becomes Flask's MAX_CONTENT_LENGTH: a body past it, JSON or a
form, is refused with a 413 before it is read (Werkzeug checks Content-Length, and stops a
chunked body at the limit). Depot's largest legitimate bodies are far below it: a deployment to
its 5,000 devices at most, picked one by one, is about 0.1 MB. The answer says what the limit is
(JSON for programs, a page or a flash for people: `errors.error_response`).

JSON bodies are read by `views.json_body` (portal.core.jsonbody); the app's JSON provider adds
the same depth limit under request.get_json (Flask-WTF reads forms sent as JSON with it).
"""
from flask import request
from flask.json.provider import DefaultJSONProvider

from portal.core.errors import DepotError
from portal.core.jsonbody import NUL_MESSAGE, DepthLimitedLoads, holds_nul
from portal.web.proxies import BadSetting

MB = 1024 * 1024


class JSONProvider(DepthLimitedLoads, DefaultJSONProvider):
    """Flask's JSON with request.get_json refusing nesting past portal.core.jsonbody.MAX_DEPTH."""


def max_body_bytes(value) -> int:
    """DEPOT_MAX_BODY_MB in bytes, or BadSetting with what is wrong."""
    text = str(value if value is not None else "").strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1024:
        raise BadSetting(f"DEPOT_MAX_BODY_MB must be the largest request body the console takes, "
                         f"in MB, 1 to 1024; got {text!r}")
    return int(text) * MB


def init_app(app) -> None:
    """MAX_CONTENT_LENGTH from DEPOT_MAX_BODY_MB, and the depth-limited JSON provider."""
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes(app.config.get("DEPOT_MAX_BODY_MB", 2))
    app.json = JSONProvider(app)
    app.before_request(_refuse_nul)


def _refuse_nul():
    """A NUL in a query argument or a form field is a 400: no field takes one, and PostgreSQL
    refuses it in any text it is asked to compare or store (a 500 otherwise)."""
    fields = [request.args]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        request.get_data()  # kept, so a route that reads the body itself still finds it
        fields.append(request.form)
    if any(holds_nul(dict(multi.lists())) for multi in fields):
        raise DepotError(NUL_MESSAGE, code="nul_character")

