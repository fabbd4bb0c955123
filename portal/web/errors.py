"""Errors as JSON for the API and as pages (or a flash fragment for htmx) for the console."""
import math

from flask import jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from portal.core.errors import DepotError, error_body
from portal.core.jsonbody import too_large_message

API_PREFIXES = ("/api/", "/dp/", "/agent/")


def wants_json() -> bool:
    """Programs call these prefixes (the API, a DP node, the agent API): they get JSON."""
    return request.path.startswith(API_PREFIXES)


def retry_after(exc: Exception) -> dict:
    """{"Retry-After": whole seconds} for an error that says how long to wait (a sign-in
    throttled, a rate limit, a provider's own wait), else {}. Whole seconds, at least 1: the
    header takes no fraction."""
    wait = getattr(exc, "retry_after", None)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait > 0 \
            or not math.isfinite(wait):
        return {}
    return {"Retry-After": str(max(1, math.ceil(wait)))}


def error_response(status: int, code: str, message: str, headers: dict | None = None,
                   extra: dict | None = None, detail: str | None = None):
    """The one shape of every error: JSON for programs, a page or a flash for people. `extra`
    adds fields to the JSON error (a 409's `reasons`); `detail`, the technical account people
    find behind a disclosure."""
    if wants_json():
        response = jsonify(error_body(code, message, extra))
    elif getattr(request, "htmx", False):
        response = render_template("_flash.html", level="error", message=message, detail=detail)
        response = make_response(response)
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    else:
        response = make_response(
            render_template("error.html", status=status, message=message, detail=detail))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def init_app(app) -> None:
    """One handler per kind of error: Depot's own, CSRF, a body too large, HTTP, and anything
    unexpected (logged)."""
    @app.errorhandler(DepotError)
    def _domain_error(exc: DepotError):
        return error_response(exc.status, exc.code, exc.message, retry_after(exc),
                              getattr(exc, "extra", None), getattr(exc, "detail", None))

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return error_response(400, "csrf_failed",
                              "The form was missing its security token or it expired; "
                              "reload the page and try again.")

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        return error_response(413, "too_large", too_large_message(request.max_content_length))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on the server; "
                              "the error was logged.")
