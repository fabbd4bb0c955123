"""Routes of /agent/v1/: the contract the reference agent (portal/agent/) and others speak."""
from flask import current_app, g, jsonify, redirect, request

from portal.blueprints.agent_api import bp, remote_ip
from portal.blueprints.agent_api.limits import check_rate
from portal.services import agent_cache, agent_deployments, agents
from portal.web.views import bearer_token, json_body


@bp.post("/enroll")
def enroll():
    """Enroll a device with an enrollment token (and its device token, when it still holds one:
    then no claim): its device token and the intervals; `claim: "pending"` when it claims to be a
    known device and waits for an admin."""
    check_rate(f"enroll:{remote_ip()}", current_app.config["DEPOT_ENROLL_RATE_LIMIT"])
    device, token = agents.enroll(json_body(strip_nul=True), remote_ip(), bearer_token())
    answer = {"device_id": device.id, "device_token": token, **agents.intervals()}
    if device.is_claim:
        answer["claim"] = "pending"
    return jsonify(answer), 201


@bp.post("/heartbeat")
def heartbeat():
    """The device is alive; its facts as it sees them now."""
    device_id = g.device.id  # before the commit expires the row
    answer = agents.heartbeat(g.device, json_body(strip_nul=True), remote_ip())
    if agent_cache.lean():  # written: the same heartbeat again is quiet (the fast path's)
        agent_cache.remember_facts(device_id,
                                   agent_cache.facts_digest(request.get_data(), remote_ip()))
    return answer


@bp.get("/work")
def work():
    """The device's unfinished deployments."""
    lean = agent_cache.lean()
    version = agent_cache.work_version(g.device.id) if lean else None  # before the database
    items = [{"id": d.id, "state": d.state, "cancel_requested": d.cancel_requested}
             for d in agent_deployments.work(g.device)]
    if lean and not items:  # nothing: the fast path answers until a deployment changes
        agent_cache.mark_idle(g.device.id, version)
    return {"deployments": items, "interval": current_app.config["DEPOT_AGENT_INTERVAL"]}


@bp.get("/deployments/<int:deployment_id>")
def manifest(deployment_id: int):
    """What to download for one deployment, with fresh links from its DP."""
    return agent_deployments.manifest(g.device, deployment_id, request.host_url)


@bp.post("/deployments/<int:deployment_id>/progress")
def progress(deployment_id: int):
    """One progress report (idempotent by seq): the deployment's state and whether to stop."""
    return agent_deployments.report_progress(g.device, deployment_id, json_body(strip_nul=True))


@bp.get("/download")
def download():
    """A central link made before central's DP node served downloads: checked as before, then
    sent on (307) to the same file and expiry at that node; the console streams no file."""
    args = request.args
    return redirect(agent_deployments.central_link_moved(
        args.get("path", ""), args.get("expires"), args.get("sig"), request.host_url), code=307)
