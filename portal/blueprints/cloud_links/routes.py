"""GET /cloud-links/v1/<dp id>/download?path&expires&sig: no login, the signature is the grant."""
import logging
from contextlib import ExitStack

from flask import Response, current_app, jsonify, request

from portal.blueprints.cloud_links import bp
from portal.core import signing
from portal.core.errors import (
    LinkRefused,
    NeedsAuth,
    NotFound,
    StorageRefused,
    StorageUnavailable,
    error_body,
)
from portal.core.libraries import split_inventory_path
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services.backends import open_storage

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str):
    """The one JSON error shape (this route is outside the API's prefixes, whose errors the app's
    handlers already answer as JSON)."""
    response = jsonify(error_body(code, message))
    response.status_code = status
    return response


@bp.get("/v1/<int:dp_id>/download")
def download(dp_id: int):
    """Stream one file of a cloud DP to whoever holds a valid link (HTTP Range passed on)."""
    path = request.args.get("path", "")
    try:
        signing.check(signing.CLOUD_RELAY, current_app.config["SECRET_KEY"], path,
                      request.args.get("expires"), request.args.get("sig"), scope=dp_id)
    except LinkRefused as exc:
        return _error(exc.status, exc.code, exc.message)
    dp = db.session.get(DistributionPoint, dp_id)
    if dp is None or dp.kind != "cloud" or split_inventory_path(path) is None:
        return _error(404, "not_found", "no such file")
    with ExitStack() as open_until_sent:
        backend = open_until_sent.enter_context(open_storage(dp))
        try:
            media = backend.open_media(path, request.headers.get("Range"))
        except NotFound as exc:  # a DP with links of its own
            return _error(404, exc.code, exc.message)
        except FileNotFoundError:
            return _error(404, "not_found", "no such file")
        except NeedsAuth:
            return _error(503, "dp_needs_auth", "the DP must be reconnected by an admin")
        except (StorageUnavailable, StorageRefused) as exc:
            log.warning("a download link of %s failed: %s", dp.name, exc.message)
            return _error(502, exc.code, "the file cannot be fetched now; try again later")
        open_until_sent.callback(media.close)
        response = Response(media.body, status=media.status, headers=media.headers,
                            mimetype="application/octet-stream", direct_passthrough=True)
        # The body streams after this view has returned: the provider's answer and the backend
        # are closed when the response is, also when the endpoint hangs up before the first byte.
        response.call_on_close(open_until_sent.pop_all().close)
        return response
