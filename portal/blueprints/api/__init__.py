"""The JSON API under /api/v1/, authenticated with personal bearer tokens."""
from flask import Blueprint, g, request

from portal.core.errors import DepotError, Unauthorized
from portal.extensions import csrf
from portal.services.accounts import user_for_token

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # bearer tokens, never cookies: nothing for a forged cross-site request to ride on

PUBLIC_ENDPOINTS = {"api.create_token"}


@bp.before_request
def _authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send a token: Authorization: Bearer <token>")
    user = user_for_token(secret.strip())
    if user is None:
        raise Unauthorized("the token is unknown, revoked, or its user is disabled")
    g.api_user = user
    return None


def json_body() -> dict:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    if not request.data:
        raise DepotError("send a JSON object in the request body")
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise DepotError("the request body is not valid JSON", code="malformed_json")
    if not isinstance(body, dict):
        raise DepotError("the request body must be a JSON object")
    return body


MAX_PAGE = 100_000  # keeps OFFSET inside what every database takes


def pagination() -> tuple[int, int]:
    """page and per_page from the query string, checked."""
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 50))
    except ValueError:
        raise DepotError("page and per_page must be whole numbers") from None
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= 200:
        raise DepotError(f"page must be between 1 and {MAX_PAGE} and per_page between 1 and 200")
    return page, per_page


def paginated(items: list, total: int, page: int, per_page: int) -> dict:
    return {"items": items, "page": page, "per_page": per_page, "total": total,
            "next_page": page + 1 if page * per_page < total else None}


from portal.blueprints.api import accounts, content, copies, deployments, devices, events, jobs  # noqa: E402,F401
