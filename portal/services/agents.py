"""What endpoints' agents ask of the server: enroll, heartbeat, work, download manifests, progress.

Every call but enrollment comes with a device token; only its SHA-256 is stored (`Device.token_hash`,
hashed like enrollment tokens). 5,000 agents heartbeat every minute, so a heartbeat writes only
the facts that changed plus `last_seen_at`.
"""
import ipaddress
import re
import secrets as token_secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from portal.core.errors import Conflict, DepotError, NotFound, StorageRefused
from portal.extensions import db
from portal.models import Asset, Deployment, Device, DistributionPoint, EnrollmentToken, utcnow
from portal.models.deployments import ACTIVE_DEPLOYMENT_STATES, FINISHED_DEPLOYMENT_STATES
from portal.services import audit, notifications
from portal.services.actors import Actor
from portal.services.backends import open_storage
from portal.services.enrollment import find_valid_token, hash_token

MAX_ADDRESSES = 32
MAC_RE = re.compile(r"^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Where each state sits on the one road a deployment travels; finished states end it.
ORDER = {"pending": 0, "downloading": 1, "applying": 2}
REPORTABLE = ("downloading", "applying", "succeeded", "failed", "cancelled")


class DeploymentChanged(Conflict):
    code = "deployment_changed"


class IllegalTransition(Conflict):
    code = "illegal_transition"


# --- the facts an agent reports ------------------------------------------------------------

def _text(body: dict, field: str, max_length: int, required: bool = False) -> str | None:
    """A string fact without control characters, trimmed to `max_length`; None when absent."""
    value = body.get(field)
    if value is None:
        if required:
            raise DepotError(f"{field} is required")
        return None
    if not isinstance(value, str):
        raise DepotError(f"{field} must be a string")
    value = CONTROL_RE.sub("", value).strip()[:max_length]
    if required and not value:
        raise DepotError(f"{field} may not be empty")
    return value


def _macs(value) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        raise DepotError(f"mac_addresses must be a list of at most {MAX_ADDRESSES} addresses")
    macs = []
    for item in value:
        mac = item.strip().lower() if isinstance(item, str) else ""
        if not MAC_RE.match(mac):
            raise DepotError(f"mac_addresses: {str(item)[:40]!r} is not a MAC address")
        mac = re.sub(r"[:-]", "", mac)
        mac = ":".join(mac[i:i + 2] for i in range(0, 12, 2))
        if mac != "00:00:00:00:00:00" and mac not in macs:
            macs.append(mac)
    return macs


def _ips(value) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        raise DepotError(f"ip_addresses must be a list of at most {MAX_ADDRESSES} addresses")
    ips = []
    for item in value:
        try:
            ip = str(ipaddress.ip_address(item.strip() if isinstance(item, str) else item))
        except ValueError:
            raise DepotError(f"ip_addresses: {str(item)[:40]!r} is not an IP address") from None
        if ip not in ips:
            ips.append(ip)
    return ips


def clean_facts(body: dict, *, enrolling: bool = False) -> dict:
    """The facts of an enrollment or heartbeat, checked and trimmed; only the ones sent."""
    facts = {
        "name": _text(body, "hostname", 255, required=enrolling),
        "serial": _text(body, "serial", 128),
        "mac_addresses": _macs(body.get("mac_addresses")),
        "ip_addresses": _ips(body.get("ip_addresses")),
        "os": _text(body, "os", 255),
        "agent_version": _text(body, "agent_version", 64),
    }
    free = body.get("free_bytes")
    if free is not None:
        if isinstance(free, bool) or not isinstance(free, int) or not 0 <= free < 2 ** 63:
            raise DepotError("free_bytes must be a whole number of bytes")
        facts["free_bytes"] = free
    return {k: v for k, v in facts.items() if v is not None}


# --- enrollment and tokens -----------------------------------------------------------------

def enroll(body: dict, remote_ip: str | None) -> tuple[Device, str]:
    """Enroll a device with an enrollment token: (device, its new device token). The same serial
    and a shared MAC as a known device enroll that device again (its old token stops working)."""
    token = find_valid_token(body.get("enroll_token"))
    facts = clean_facts(body, enrolling=True)
    device = _same_device(facts.get("serial", ""), facts.get("mac_addresses", []))
    again = device is not None
    if device is None:
        device = Device(name=facts["name"])
        db.session.add(device)
    _follow_hostname(device, facts.pop("name"))
    for field, value in facts.items():
        setattr(device, field, value)
    secret = "ddt_" + token_secrets.token_urlsafe(32)
    now = utcnow()
    device.token_hash = hash_token(secret)
    device.enrollment_token_id = token.id
    device.remote_ip = remote_ip
    device.last_seen_at = now
    if token.group_id is not None:
        device.group_id = token.group_id
    if again:
        # Its agent starts over (a new state folder numbers its reports from 1); the old token
        # is dead, so no report of the old one can arrive any more.
        db.session.execute(update(Deployment).where(
            Deployment.device_id == device.id,
            Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES)).values(report_seq=0))
    token.uses = EnrollmentToken.uses + 1  # in SQL: two enrollments at once both count
    token.last_used_at = now
    db.session.flush()
    audit.record(Actor(None, via="agent", ip=remote_ip), "device.enroll", target=device.name,
                 device_id=device.id, serial=device.serial, enrollment_token=token.name,
                 again=again)
    db.session.commit()
    return device, secret


def _same_device(serial: str, macs: list[str]) -> Device | None:
    """The device this serial and any of these MACs already name (the latest seen), if any."""
    if not serial or not macs:
        return None
    candidates = db.session.scalars(
        select(Device).where(Device.serial == serial)
        .order_by(Device.last_seen_at.desc().nulls_last(), Device.id.desc())).all()
    for device in candidates:
        if set(device.mac_addresses or []) & set(macs):
            return device
    return None


def device_for_token(secret) -> Device | None:
    """The device holding this device token, or None."""
    if not isinstance(secret, str) or not secret.strip():
        return None
    return db.session.scalars(
        select(Device).where(Device.token_hash == hash_token(secret.strip()))).first()


def _follow_hostname(device: Device, hostname: str) -> None:
    """Name the device after the hostname its agent reports when that changed (or is new); a
    name an admin gave it stays while the hostname does."""
    if hostname != device.hostname:
        device.hostname = device.name = hostname


def intervals() -> dict:
    """How often agents heartbeat/poll and report progress, in seconds."""
    config = current_app.config
    return {"interval": config["DEPOT_AGENT_INTERVAL"],
            "report_interval": config["DEPOT_AGENT_REPORT_INTERVAL"]}


def heartbeat(device: Device, body: dict, remote_ip: str | None) -> dict:
    """Record that the device is alive and what it says about itself (only changed facts)."""
    facts = clean_facts(body)
    if "name" in facts:
        _follow_hostname(device, facts.pop("name"))
    facts["remote_ip"] = remote_ip
    for field, value in facts.items():
        if getattr(device, field) != value:
            setattr(device, field, value)
    device.last_seen_at = utcnow()
    db.session.commit()
    return intervals()


# --- work and manifests --------------------------------------------------------------------

def work(device: Device) -> list[Deployment]:
    """The device's unfinished deployments, oldest first."""
    return list(db.session.scalars(
        select(Deployment).where(Deployment.device_id == device.id,
                                 Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES))
        .order_by(Deployment.id)))


def deployment_of(device: Device, deployment_id: int) -> Deployment:
    """One of this device's deployments; NotFound for anyone else's."""
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
                {"key": pinned["key"], "path": f["path"], "size": f["size"],
                 "sha256": f["sha256"], "url": backend.download_link(f["path"], ttl)}
                for pinned in deployment.assets for f in pinned["files"]]
    except StorageRefused as exc:  # asking again will not change it: no agent could ever start
        _fail_changed(deployment, f"{dp.name} gives no download link: {exc.message}")
    answer["bytes_total"] = sum(f["size"] for f in answer["files"])
    return answer


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
            "phase": _text(body, "phase", 200), "error": _text(body, "error", 2000)}


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
              "bytes_done": min(report["bytes_done"], deployment.bytes_total or report["bytes_done"])}
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
    if applied and new == "failed":
        db.session.refresh(deployment)
        notifications.deployment_failed(deployment)
    if applied and (device.last_seen_at is None or now - device.last_seen_at > timedelta(seconds=10)):
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
            outcome[state].append(deployment.id)
            if state == "failed":
                db.session.refresh(deployment)
                notifications.deployment_failed(deployment)
    db.session.commit()
    return outcome
