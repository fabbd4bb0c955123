"""DP-node mode: the same code base serving a branch's content root to the central server
(inventory, resumable uploads, deletes, health) and to endpoints (signed download links).

A node runs on `portal.core` and Flask alone: no database, no Redis, none of the console's stack
(the import contract in `.importlinter` holds it so, and its needs are `requirements-dpnode.txt`).
`python -m portal.dpnode run --root DIR --bind HOST:PORT` starts one (key from DEPOT_DP_KEY);
`flask --app wsgi dp-node run` does the same from a central install.
"""
import logging
import os

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from portal.core import http_headers, log_redaction
from portal.core.errors import DepotError, PermissionDenied, error_body
from portal.core.files import ContentRoot
from portal.core.jsonbody import DepthLimitedLoads, too_large_message
from portal.dpnode.config import NodeConfig

MIN_KEY_LENGTH = 16
log = logging.getLogger(__name__)


class NodeMisconfigured(DepotError):
    """The node cannot start: said once, clearly, at start-up."""


def check_settings(root: str | None, key: str | None) -> None:
    """Refuse to start without a usable root or a key long enough to be a secret."""
    if not key or len(key) < MIN_KEY_LENGTH:
        raise NodeMisconfigured(f"set DEPOT_DP_KEY to a secret of at least {MIN_KEY_LENGTH} "
                                "characters (the same key is entered in the console's Add local)")
    if not root or not os.path.isdir(root):
        raise NodeMisconfigured(f"the content root {root} does not exist or is not a folder")
    if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        raise NodeMisconfigured(f"the content root {root} is not writable by this user")


def create_node_app(config_class=NodeConfig) -> Flask:
    """Build a DP node app for the root and key in `config_class` (the environment by default)."""
    app = Flask(__name__)
    app.config.from_object(config_class)
    app.json = NodeJSONProvider(app)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_redaction.redact_logger("werkzeug")  # its request lines hold whole links
    root = app.config["DEPOT_DP_ROOT"]
    check_settings(root, app.config["DEPOT_DP_KEY"])
    app.config["DEPOT_DP_ROOT"] = os.path.abspath(root)

    from portal.dpnode.routes import bp, store

    _register_errors(app)
    app.after_request(_security_headers)
    app.register_blueprint(bp)
    ContentRoot(app.config["DEPOT_DP_ROOT"]).ensure_layout()
    if app.config.get("DEPOT_DP_DOWNLOADS_ONLY"):
        app.before_request(_downloads_only)
    else:
        store(app).sweep()
    return app


def _security_headers(response):
    """Every answer: the node's security headers (portal.core.http_headers); its JSON (health,
    inventory, uploads, errors) is never kept by a browser or a proxy. A download keeps the
    caching send_file gives it (revalidated against the node, which checks the link)."""
    http_headers.add_missing(response.headers, http_headers.NODE_HEADERS)
    if request.endpoint != "dpnode.download" or response.status_code >= 400:
        response.headers["Cache-Control"] = http_headers.NO_STORE
    return response


class NodeJSONProvider(DepthLimitedLoads, DefaultJSONProvider):
    """Flask's JSON with request.get_json refusing nesting past portal.core.jsonbody.MAX_DEPTH
    (the node's own JSON bodies are read by routes._json)."""


DOWNLOADS_ONLY_ENDPOINTS = {"dpnode.download", "dpnode.health"}


def _downloads_only():
    """Central's own node serves files to endpoints and says it is up; nothing else: central's
    content is central's (its rescans, copies and deletes run in central's processes)."""
    if request.endpoint is not None and request.endpoint not in DOWNLOADS_ONLY_ENDPOINTS:
        raise PermissionDenied("this DP node only serves downloads (DEPOT_DP_DOWNLOADS_ONLY): "
                               "central's content is changed by central itself")


def _register_errors(app: Flask) -> None:
    """Every error as the one JSON shape (portal.core.errors.error_body), never a page."""

    def answer(status: int, code: str, message: str, headers: dict | None = None):
        response = jsonify(error_body(code, message))
        response.status_code = status
        response.headers.update(headers or {})
        return response

    @app.errorhandler(DepotError)
    def _domain_error(exc: DepotError):
        return answer(exc.status, exc.code, exc.message)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        return answer(413, "too_large", too_large_message(request.max_content_length))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return answer(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"),
                      exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return answer(500, "internal_error", "Something went wrong on the DP node; the error was "
                                             "logged.")
