"""Routes of /libraries/<slug>/uploads/: the resumable upload protocol of the DP node
(/dp/v1/uploads, portal.dpnode.uploads) spoken by the console's browser client
(portal/static/depot-upload.js) into a library at central, behind sign-in, CSRF and the role that
may edit content. Answers are JSON, errors too (the one error shape), since a script reads them.

CSRF is checked here, once the body limit is raised to a chunk's size: the app-wide check reads
the form first, which would refuse a chunk past DEPOT_MAX_BODY_MB before this blueprint could
say how large a chunk may be.
"""
from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_login import login_required
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge

from portal.core.errors import DepotError, error_body
from portal.core.jsonbody import too_large_message
from portal.core.libraries import library_for_slug
from portal.dpnode.uploads import chunk_offset
from portal.extensions import csrf
from portal.services import uploads
from portal.web.auth import console_actor
from portal.web.views import json_body

bp = Blueprint("uploads", __name__, url_prefix="/<slug>/uploads")
CHUNK_SLACK = 64 * 1024  # headers and multipart never come into it; a little room all the same


@bp.url_value_preprocessor
def _library(endpoint, values):
    """The library of the URL's slug (404 for a slug that names none)."""
    library = library_for_slug(values.pop("slug", None) or "")
    if library is None:
        abort(404, description="no such library")
    values["library"] = library


@bp.before_request
def _limits_and_csrf():
    """A chunk may be as large as DEPOT_UPLOAD_CHUNK_BYTES; then the CSRF token (its header)."""
    if request.method == "PATCH":
        request.max_content_length = current_app.config["DEPOT_UPLOAD_CHUNK_BYTES"] + CHUNK_SLACK
    csrf.protect()


def _error(status: int, code: str, message: str, extra: dict | None = None):
    response = jsonify(error_body(code, message, extra))
    response.status_code = status
    return response


@bp.errorhandler(DepotError)
def _depot_error(exc: DepotError):
    return _error(exc.status, exc.code, exc.message, getattr(exc, "extra", None))


@bp.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError):
    return _error(400, "csrf_failed", "The page's security token is missing or expired; reload "
                                      "the page and the upload resumes where it stopped.")


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge):
    return _error(413, "too_large", too_large_message(request.max_content_length))


@bp.post("")
@csrf.exempt
@login_required
def create(library: str):
    """Start an upload of {path, size, sha256} into the library, or find the one under way
    (201 new, 200 found; `complete` when it finished already)."""
    body = json_body()
    state, created = uploads.start(console_actor(), library, body.get("path"), body.get("size"),
                                   body.get("sha256"))
    return state, 201 if created else 200


@bp.get("/<uid>")
@login_required
def show(library: str, uid: str):
    """How far an upload got: `offset` is where the browser resumes."""
    return uploads.status(console_actor(), library, uid)


@bp.patch("/<uid>")
@csrf.exempt
@login_required
def write(library: str, uid: str):
    """Write the body at the Upload-Offset header's byte (409 unless that is where it stands)."""
    offset = chunk_offset(request.headers, request.content_length)
    return uploads.write(console_actor(), library, uid, offset, request.content_length,
                         request.stream.read)


@bp.post("/<uid>/finish")
@csrf.exempt
@login_required
def finish(library: str, uid: str):
    """Check size and SHA-256 and put the file in place (422, old asset kept, if damaged);
    `rescan_url` is the progress widget of the rescan of central that will list it."""
    state, job = uploads.finish(console_actor(), library, uid)
    return dict(state, rescan_url=url_for("jobs.show", job_id=job.id) if job else None)


@bp.delete("/<uid>")
@csrf.exempt
@login_required
def delete(library: str, uid: str):
    """Forget an upload and the bytes received."""
    uploads.abort(console_actor(), library, uid)
    return "", 204
