"""What endpoints' agents tell the server about their device: enroll, heartbeat, the facts.

Every call but enrollment comes with a device token; only its SHA-256 is stored
(`Device.token_hash`, hashed like enrollment tokens). 5,000 agents heartbeat every minute, so a
heartbeat writes only the facts that changed plus `last_seen_at`; with DEPOT_AGENT_LEAN one that
repeats the last one written never gets here (the agent API's fast path keeps its time in Redis
for `agent_flush`). What an agent asks about its
deployments (work, manifests, progress) is in `agent_deployments`.
"""
import ipaddress
import logging
import re
import secrets as token_secrets

from flask import current_app
from sqlalchemy import func, select, update

from portal.core.errors import Conflict, DepotError
from portal.core.names import has_control_characters, without_control_characters
from portal.extensions import db
from portal.models import Deployment, Device, EnrollmentToken, utcnow
from portal.models.deployments import ACTIVE_DEPLOYMENT_STATES
from portal.services import agent_cache, audit, notifications
from portal.services.actors import Actor
from portal.services.enrollment import find_valid_token, hash_token

log = logging.getLogger(__name__)

MAX_ADDRESSES = 32
MAX_PENDING_CLAIMS = 3
MAC_RE = re.compile(r"^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}$")
HOSTNAME_LENGTH = 255  # Device.name's column


# --- the facts an agent reports ------------------------------------------------------------

def text_lines_fact(body: dict, field: str, max_length: int) -> str | None:
    """A text of several lines (a tool's output): each line cleaned as text_fact cleans a fact,
    blank ones dropped, joined by newlines and trimmed to `max_length` from the end (where a
    tool says why it stopped); None when absent."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DepotError(f"{field} must be a string")
    # A line redrawn with carriage returns (a progress count) keeps its last state only.
    lines = [without_control_characters(([p for p in line.split("\r") if p.strip()] or [""])[-1])
             .rstrip() for line in value.split("\n")]
    text = "\n".join(line for line in lines if line.strip())
    if len(text) > max_length:
        first, _, rest = text.partition("\n")
        text = first[:200] + "\n…\n" + rest[-(max_length - len(first[:200]) - 3):]
    return text


def text_fact(body: dict, field: str, max_length: int, required: bool = False) -> str | None:
    """A string fact without control or format characters (bidirectional overrides among them),
    trimmed to `max_length`; None when absent."""
    value = body.get(field)
    if value is None:
        if required:
            raise DepotError(f"{field} is required")
        return None
    if not isinstance(value, str):
        raise DepotError(f"{field} must be a string")
    value = without_control_characters(value).strip()[:max_length]
    if required and not value:
        raise DepotError(f"{field} may not be empty")
    return value


def hostname_fact(body: dict, required: bool) -> str | None:
    """The hostname, which names the device in the console, cleaned as text_fact cleans (so a
    bidirectional override cannot make it read as another device's name: an admin's rename with
    one is refused, portal.core.names.clean_name) and never empty when sent."""
    raw = body.get("hostname")
    if raw is None and not required:
        return None
    value = text_fact(body, "hostname", HOSTNAME_LENGTH, required=True)
    if has_control_characters(raw):
        log.warning("an agent reported the hostname %a: kept as %a, without control and format "
                    "characters", raw[:HOSTNAME_LENGTH], value)
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
        "name": hostname_fact(body, required=enrolling),
        "serial": text_fact(body, "serial", 128),
        "mac_addresses": _macs(body.get("mac_addresses")),
        "ip_addresses": _ips(body.get("ip_addresses")),
        "os": text_fact(body, "os", 255),
        "agent_version": text_fact(body, "agent_version", 64),
    }
    free = body.get("free_bytes")
    if free is not None:
        if isinstance(free, bool) or not isinstance(free, int) or not 0 <= free < 2 ** 63:
            raise DepotError("free_bytes must be a whole number of bytes")
        facts["free_bytes"] = free
    return {k: v for k, v in facts.items() if v is not None}


# --- enrollment and tokens -----------------------------------------------------------------

def enroll(body: dict, remote_ip: str | None,
           device_token: str | None = None) -> tuple[Device, str]:
    """Enroll a device with an enrollment token: (device, its new device token).

    An agent that shows its valid device token (`device_token`, from the Authorization header
    or the body) enrolls its own device again: a new token, the old one stops working. Without
    it, the same serial and a shared MAC as a known device make a pending claim on that device
    (a record of its own, with a token but no work until an admin approves it); nobody takes a
    device over with an enrollment token and facts that are not secret."""
    token = find_valid_token(body.get("enroll_token"))
    facts = clean_facts(body, enrolling=True)
    device = device_for_token(device_token if device_token is not None
                              else body.get("device_token"))
    claimed = None
    if device is None:
        claimed = _same_device(facts.get("serial", ""), facts.get("mac_addresses", []))
        if claimed is not None:
            _refuse_too_many_claims(claimed)
    again = device is not None
    if device is None:
        device = Device(name=facts["name"], claims_device_id=claimed.id if claimed else None)
        db.session.add(device)
    follow_hostname(device, facts.pop("name"))
    for field, value in facts.items():
        setattr(device, field, value)
    secret = "ddt_" + token_secrets.token_urlsafe(32)
    now = utcnow()
    device.token_hash = hash_token(secret)
    device.enrollment_token_id = token.id
    device.remote_ip = remote_ip
    device.last_seen_at = now
    if token.group_id is not None and not device.is_claim:  # a claim joins no group: no work
        device.group_id = token.group_id
    if again:
        restart_reports(device.id)
    token.uses = EnrollmentToken.uses + 1  # in SQL: two enrollments at once both count
    token.last_used_at = now
    db.session.flush()
    actor = Actor(None, via="agent", ip=remote_ip)
    if claimed is not None:
        audit.record(actor, "device.claim", target=claimed.name, device_id=claimed.id,
                     claim_id=device.id, serial=device.serial, hostname=device.hostname,
                     enrollment_token=token.name)
        notifications.device_claimed(device, claimed)
    else:
        audit.record(actor, "device.enroll", target=device.name, device_id=device.id,
                     serial=device.serial, enrollment_token=token.name, again=again)
    db.session.commit()
    return device, secret


def restart_reports(device_id: int) -> None:
    """The device's agent starts over (a new state folder numbers its reports from 1); its old
    token is dead, so no report of the old one can arrive any more. Caller commits."""
    db.session.execute(update(Deployment).where(
        Deployment.device_id == device_id,
        Deployment.state.in_(ACTIVE_DEPLOYMENT_STATES)).values(report_seq=0))
    # (its old token is tombstoned and its markers dropped on commit: agent_cache's hooks)
    agent_cache.work_changed_on_commit(db.session, [device_id])


def _refuse_too_many_claims(device: Device) -> None:
    """At most MAX_PENDING_CLAIMS claims wait on one device: enough for a real one reinstalled
    a few times, not a flood of notifications from whoever holds an enrollment token."""
    waiting = db.session.scalar(select(func.count()).select_from(Device).where(
        Device.claims_device_id == device.id))
    if waiting >= MAX_PENDING_CLAIMS:
        raise Conflict(f"{waiting} enrollments claiming to be {device.name} already wait for an "
                       "admin; try again once they are approved or refused",
                       code="claims_waiting")


def _same_device(serial: str, macs: list[str]) -> Device | None:
    """The device this serial and any of these MACs already name (the latest seen), if any;
    pending claims name no device."""
    if not serial or not macs:
        return None
    candidates = db.session.scalars(
        select(Device).where(Device.serial == serial, Device.claims_device_id.is_(None))
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


def follow_hostname(device: Device, hostname: str) -> None:
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
        follow_hostname(device, facts.pop("name"))
    facts["remote_ip"] = remote_ip
    for field, value in facts.items():
        if getattr(device, field) != value:
            setattr(device, field, value)
    device.last_seen_at = utcnow()
    db.session.commit()
    return intervals()
