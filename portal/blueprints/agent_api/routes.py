"""Routes of /agent/v1/: the contract the reference agent (portal/agent/) and others speak."""
import os

from flask import current_app, g, jsonify, request, send_file

from portal.blueprints.agent_api import bp, remote_ip
from portal.blueprints.agent_api.limits import check_rate
from portal.core import signing
from portal.core.errors import NotFound
from portal.core.paths import confine, inside_root
from portal.services import agent_deployments, agents
from portal.services.assets import central_dp
from portal.web.views import json_body


@bp.post("/enroll")
def enroll():
    """Enroll a device with an enrollment token: its device token and the intervals."""
    check_rate(f"enroll:{remote_ip()}", current_app.config["DEPOT_ENROLL_RATE_LIMIT"])
    device, token = agents.enroll(json_body(), remote_ip())
    answer = {"device_id": device.id, "device_token": token, **agents.intervals()}
    return jsonify(answer), 201


@bp.post("/heartbeat")
def heartbeat():
    """The device is alive; its facts as it sees them now."""
    return agents.heartbeat(g.device, json_body(), remote_ip())


@bp.get("/work")
def work():
    """The device's unfinished deployments."""
    items = [{"id": d.id, "state": d.state, "cancel_requested": d.cancel_requested}
             for d in agent_deployments.work(g.device)]
    return {"deployments": items, "interval": current_app.config["DEPOT_AGENT_INTERVAL"]}


@bp.get("/deployments/<int:deployment_id>")
def manifest(deployment_id: int):
    """What to download for one deployment, with fresh links from its DP."""
    return agent_deployments.manifest(g.device, deployment_id, request.host_url)


@bp.post("/deployments/<int:deployment_id>/progress")
def progress(deployment_id: int):
    """One progress report (idempotent by seq): the deployment's state and whether to stop."""
    return agent_deployments.report_progress(g.device, deployment_id, json_body())


@bp.get("/download")
def download():
    """A file of the central DP through a signed link (no login; HTTP Range and If-Range work)."""
    path = request.args.get("path", "")
    signing.check(signing.CENTRAL, current_app.config["SECRET_KEY"], path,
                  request.args.get("expires"), request.args.get("sig"))
    root = central_dp().root
    full = confine(root, path)
    if not os.path.isfile(full) or not inside_root(root, full):
        raise NotFound(f"{path} is not at the central DP")
    response = send_file(os.fsdecode(full), as_attachment=True, conditional=True, max_age=0)
    response.headers["Accept-Ranges"] = "bytes"
    return response
