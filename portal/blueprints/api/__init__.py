"""The JSON API under /api/v1/, authenticated with personal bearer tokens."""
from flask import Blueprint, g, request

from portal.core.errors import Unauthorized
from portal.extensions import csrf
from portal.services.accounts import user_for_token
from portal.web.views import bearer_token

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # bearer tokens, never cookies: nothing for a forged cross-site request to ride on

PUBLIC_ENDPOINTS = {"api.create_token", "api.openapi_document"}


@bp.before_request
def _authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    secret = bearer_token()
    if secret is None:
        raise Unauthorized("send a token: Authorization: Bearer <token>")
    user = user_for_token(secret)
    if user is None:
        raise Unauthorized("the token is unknown, revoked, or its user is disabled")
    g.api_user = user
    return None


from portal.blueprints.api import (  # noqa: E402,F401
    accounts, content, copies, deployments, devices, events, jobs, openapi)
