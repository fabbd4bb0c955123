"""The agent API under /agent/v1/: enrollment, heartbeats, work, download manifests, progress.

Every call but enrollment and the central download links needs `Authorization: Bearer <device
token>`; each device may make DEPOT_AGENT_RATE_LIMIT calls a minute, each address
DEPOT_ENROLL_RATE_LIMIT enrollments a minute (429 with Retry-After beyond that).

Quiet heartbeats and idle work polls are answered before Flask by `fast` (DEPOT_AGENT_LEAN).
"""
from flask import Blueprint, current_app, g, request

from portal.blueprints.agent_api.limits import check_rate
from portal.core.errors import Unauthorized
from portal.extensions import csrf
from portal.services import agent_cache
from portal.services.agents import device_for_token
from portal.web.auth import client_ip
from portal.web.views import bearer_token

bp = Blueprint("agent_api", __name__, url_prefix="/agent/v1")
csrf.exempt(bp)  # device tokens in a header, never cookies: nothing for a forged request to ride on

# Enrollment has its own limit per address; download links carry their own signature.
UNAUTHENTICATED = {"agent_api.enroll", "agent_api.download"}


@bp.before_request
def _authenticate():
    if request.endpoint in UNAUTHENTICATED:
        return None
    secret = bearer_token()
    if secret is None:
        raise Unauthorized("send the device token: Authorization: Bearer <device token>")
    device = device_for_token(secret)
    if device is None:
        raise Unauthorized("the device token is unknown (the device was removed or enrolled "
                           "again); enroll again")
    check_rate(f"device:{device.id}", current_app.config["DEPOT_AGENT_RATE_LIMIT"])
    if agent_cache.lean():  # the next call of this token can take the fast path
        agent_cache.cache_device(device.token_hash, device.id)
    g.device = device
    return None


def remote_ip() -> str | None:
    """The address the agent's request comes from (what `Device.remote_ip` records)."""
    return client_ip()


from portal.blueprints.agent_api import routes  # noqa: E402,F401
