"""What an agent asks about its device's deployments: its work, the manifest of one (with fresh
download links), and progress reports; and the sweep that fails deployments whose agent went
silent.

A deployment travels one road: pending, downloading, applying, then succeeded, failed or
cancelled. Reports are numbered (`seq`): one not above the last applied changes nothing, and a
state never moves back.
"""
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from portal.core import signing
from portal.core.errors import Conflict, DepotError, NotFound, StorageRefused
from portal.extensions import db
from portal.models import Asset, Deployment, Device, DistributionPoint, utcnow
from portal.models.deployments import ACTIVE_DEPLOYMENT_STATES, FINISHED_DEPLOYMENT_STATES
from portal.services import agent_cache, notifications
from portal.services.agents import text_fact, text_lines_fact
from portal.services.assets import central_dp
from portal.services.backends import open_storage

# Where each state sits on the one road a deployment travels; finished states end it.
ORDER = {"pending": 0, "downloading": 1, "applying": 2}
REPORTABLE = ("downloading", "applying", "succeeded", "failed", "cancelled")


class DeploymentChanged(Conflict):
    code = "deployment_changed"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class ClaimPending(DepotError):
    code, status = "claim_pending", 403


# --- work and manifests --------------------------------------------------------------------

def work(device: Device) -> list[Deployment]:
    """The device's unfinished deployments, oldest first; none for a pending claim."""
    if device.is_claim:
        return []
    return list(db.session.scalars(
        select(Deployment).where(Deployment.device_id == device.id,
                                 Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES))
        .order_by(Deployment.id)))


def deployment_of(device: Device, deployment_id: int) -> Deployment:
    """One of this device's deployments; NotFound for anyone else's, ClaimPending for a claim
    (it has none, and gets no link before an admin approves it)."""
    if device.is_claim:
        raise ClaimPending("this enrollment claims to be a known device and waits for an admin "
                           "to approve it")
    deployment = db.session.get(Deployment, deployment_id)
    if deployment is None or deployment.device_id != device.id:
        raise NotFound(f"no deployment {deployment_id} for this device")
    return deployment


def manifest(device: Device, deployment_id: int, public_url: str | None = None) -> dict:
    """What to download for a deployment, with fresh links from its DP (links to central itself
    point at `public_url` unless DEPOT_PUBLIC_URL says otherwise). A pinned asset whose copy at
    the DP changed since (or went) fails the deployment: DeploymentChanged."""
    deployment = deployment_of(device, deployment_id)
    answer = {"id": deployment.id, "state": deployment.state,
              "cancel_requested": deployment.cancel_requested,
              "dp": {"id": deployment.dp_id, "name": deployment.dp_name},
              "image": deployment.image, "files": [], "bytes_total": deployment.bytes_total}
    if deployment.state in FINISHED_DEPLOYMENT_STATES or deployment.cancel_requested:
        return answer
    dp = db.session.get(DistributionPoint, deployment.dp_id) if deployment.dp_id else None
    if dp is None:
        _fail_changed(deployment, f"the distribution point {deployment.dp_name} was removed "
                                  "after this deployment was created; deploy again")
    if dp.disabled:
        raise DepotError(f"{dp.name} is disabled for maintenance; try again later",
                         code="dp_unavailable", status=503)
    current = {a.key: a.digest for a in db.session.scalars(
        select(Asset).where(Asset.dp_id == dp.id, Asset.key.in_(deployment.asset_keys)))}
    for pinned in deployment.assets:
        if pinned["key"] not in current:
            _fail_changed(deployment, f"{pinned['key']} is no longer at {dp.name}; deploy again")
        if current[pinned["key"]] != pinned["digest"]:
            _fail_changed(deployment, f"the copy of {pinned['key']} at {dp.name} changed after "
                                      "this deployment was created; deploy again")
    ttl = current_app.config["DEPOT_DOWNLOAD_LINK_TTL"]
    try:
        with open_storage(dp, public_url=public_url) as backend:
            answer["files"] = [
                _item(dp, pinned["key"], f, backend.download_link(f["path"], ttl))
                for pinned in deployment.assets for f in pinned["files"]]
    except StorageRefused as exc:  # asking again will not change it: no agent could ever start
        _fail_changed(deployment, f"{dp.name} gives no download link: {exc.message}")
    answer["bytes_total"] = sum(f["size"] for f in answer["files"])
    return answer


def _item(dp: DistributionPoint, key: str, file: dict, url: str) -> dict:
    """One file of the manifest; a DP node's https link carries the certificate pinned for the
    node, which the agent holds the download to (the node's certificate is self-signed)."""
    item = {"key": key, "path": file["path"], "size": file["size"], "sha256": file["sha256"],
            "url": url}
    if dp.kind == "local" and dp.tls_fingerprint and url.startswith("https://"):
        item["tls_fingerprint"] = dp.tls_fingerprint
    return item


def _fail_changed(deployment: Deployment, message: str):
    _finish(deployment, "failed", message)
    db.session.commit()
    raise DeploymentChanged(message)


def _finish(deployment: Deployment, state: str, error: str | None = None) -> None:
    """Move a deployment to a finished state; a failure tells everyone. Caller commits."""
    deployment.state = state
    deployment.finished_at = utcnow()
    if error:
        deployment.error = error
    if state == "failed":
        notifications.deployment_failed(deployment)


# --- progress ------------------------------------------------------------------------------

def _report(body: dict) -> dict:
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 2 ** 31:
        raise DepotError("seq must be a whole number from 1 (higher for each new report)")
    state = body.get("state")
    if state not in REPORTABLE:
        raise DepotError(f"state must be one of: {', '.join(REPORTABLE)}")
    done = body.get("bytes_done", 0)
    if isinstance(done, bool) or not isinstance(done, int) or not 0 <= done < 2 ** 63:
        raise DepotError("bytes_done must be a whole number of bytes")
    return {"seq": seq, "state": state, "bytes_done": done,
            "phase": text_fact(body, "phase", 200), "error": text_lines_fact(body, "error", 4000)}


def _answer(deployment: Deployment) -> dict:
    return {"state": deployment.state,
            "cancel": deployment.cancel_requested or deployment.state == "cancelled"}


def report_progress(device: Device, deployment_id: int, body: dict) -> dict:
    """Apply one progress report: {state, cancel}. A report whose seq is not above the last one
    applied, or about a finished deployment, changes nothing; states only move forward."""
    report = _report(body)
    deployment = deployment_of(device, deployment_id)
    if deployment.state in FINISHED_DEPLOYMENT_STATES or report["seq"] <= deployment.report_seq:
        return _answer(deployment)
    old, new = deployment.state, report["state"]
    if new in ORDER and ORDER[new] < ORDER[old]:
        raise IllegalTransition(f"deployment {deployment.id} is {old}; it cannot go back to {new}")
    if new == "succeeded" and old == "pending":
        raise IllegalTransition(f"deployment {deployment.id} cannot succeed before it downloads")
    now = utcnow()
    values = {"report_seq": report["seq"], "state": new, "reported_at": now,
              "bytes_done": min(report["bytes_done"],
                                deployment.bytes_total or report["bytes_done"])}
    if report["phase"] is not None:
        values["phase"] = report["phase"]
    if old == "pending":
        values["started_at"] = now
    if new in FINISHED_DEPLOYMENT_STATES:
        values["finished_at"] = now
        if new == "succeeded":
            values["bytes_done"] = deployment.bytes_total
    if new == "failed":
        values["error"] = report["error"] or "the agent reported a failure without a reason"
    # Applied only over the row as read: a report racing another, or a cancel, changes nothing.
    applied = db.session.execute(
        update(Deployment).where(Deployment.id == deployment.id, Deployment.state == old,
                                 Deployment.report_seq == deployment.report_seq)
        .values(**values).execution_options(synchronize_session=False)).rowcount
    if applied:
        agent_cache.work_changed_on_commit(db.session, [device.id])
    if applied and new == "failed":
        db.session.refresh(deployment)
        notifications.deployment_failed(deployment)
    if applied and (device.last_seen_at is None
                    or now - device.last_seen_at > timedelta(seconds=10)):
        device.last_seen_at = now
    db.session.commit()
    db.session.refresh(deployment)
    return _answer(deployment)


# --- upkeep --------------------------------------------------------------------------------

def fail_silent_deployments(silent_after: int | None = None) -> dict:
    """Fail running deployments whose agent said nothing for `silent_after` seconds (default
    DEPOT_DEPLOYMENT_SILENT_AFTER); one whose cancel was asked for ends cancelled instead.
    Pending deployments wait for their device, however long it stays off."""
    if silent_after is None:
        silent_after = current_app.config["DEPOT_DEPLOYMENT_SILENT_AFTER"]
    cutoff = utcnow() - timedelta(seconds=silent_after)
    stale = db.session.scalars(
        select(Deployment).where(Deployment.state.in_(("downloading", "applying")),
                                 db.func.coalesce(Deployment.reported_at, Deployment.started_at,
                                                  Deployment.created_at) < cutoff)).all()
    outcome = {"failed": [], "cancelled": []}
    for deployment in stale:
        state = "cancelled" if deployment.cancel_requested else "failed"
        minutes = max(1, silent_after // 60)
        error = (f"the agent on {deployment.device_name} went silent for over {minutes} min "
                 f"while {deployment.state}")
        if state == "cancelled":
            error = None
        applied = db.session.execute(
            update(Deployment).where(Deployment.id == deployment.id,
                                     Deployment.state == deployment.state,
                                     Deployment.report_seq == deployment.report_seq)
            .values(state=state, error=error, finished_at=utcnow())
            .execution_options(synchronize_session=False)).rowcount
        if applied:
            agent_cache.work_changed_on_commit(db.session, [deployment.device_id])
            outcome[state].append(deployment.id)
            if state == "failed":
                db.session.refresh(deployment)
                notifications.deployment_failed(deployment)
    db.session.commit()
    return outcome


def central_link_moved(path: str, expires, sig, public_url: str | None = None) -> str:
    """Where a link to central's /agent/v1/download (made before central's DP node served its
    files) goes now: the same file until the same time at that node. LinkRefused, as before,
    unless this server signed it and it has not expired."""
    signing.check(signing.CENTRAL, current_app.config["SECRET_KEY"], path, expires, sig)
    with open_storage(central_dp(), public_url=public_url) as backend:
        return backend.node_link(path, int(expires))
