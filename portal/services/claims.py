"""Claims: an enrollment whose serial and MAC match a known device but that did not show the
device's token. It is a device record of its own (`Device.claims_device_id`) with a token and no
work; an admin approves it (the two records merge: the known device keeps its name, group and
history, takes the claimer's facts and token, and its old token stops working) or refuses it (the
claimer's record and token go).
"""
from sqlalchemy import select

from portal.core.errors import NotFound
from portal.core.numbers import is_id
from portal.extensions import db
from portal.models import Device
from portal.services import agent_cache, audit
from portal.services.actors import Actor
from portal.services.agents import follow_hostname, restart_reports
from portal.services.computers import may_manage
from portal.services.permissions import scoped_sites

# What the claimer's agent reported, taken over by the device on approval (its name follows the
# hostname as a heartbeat would; its group, history and enrollment date stay).
FACTS = ("serial", "mac_addresses", "ip_addresses", "remote_ip", "os", "agent_version",
         "free_bytes", "last_seen_at", "enrollment_token_id")


def list_claims(device_id: int | None = None, user=None) -> list[Device]:
    """Pending claims, oldest first (on one device when `device_id` is given). A claim is in no
    group, so at no site: a viewer scoped to sites sees none (user None: every claim)."""
    if scoped_sites(user) is not None:
        return []
    query = select(Device).where(Device.claims_device_id.is_not(None))
    if device_id is not None:
        query = query.where(Device.claims_device_id == device_id)
    return list(db.session.scalars(query.order_by(Device.enrolled_at, Device.id)))


def get_claim(claim_id) -> Device:
    """One pending claim, or NotFound."""
    claim = db.session.get(Device, claim_id) if is_id(claim_id) else None
    if claim is None or not claim.is_claim:
        raise NotFound(f"no pending claim {claim_id} (it may have been approved or refused "
                       "already)")
    return claim


def approve(actor: Actor, claim: Device) -> Device:
    """Merge the claim into the device it claims to be: the claimer's agent goes on as that
    device (its token now the device's), the device's old token stops working. Other claims on
    the same device stay pending."""
    may_manage(actor)
    device = claim.claims
    claim_id, token_hash, hostname = claim.id, claim.token_hash, claim.hostname
    facts = {field: getattr(claim, field) for field in FACTS}
    db.session.delete(claim)
    db.session.flush()  # the token hash is unique: the claimer's row goes first
    for field, value in facts.items():
        setattr(device, field, value)
    if hostname:
        follow_hostname(device, hostname)
    device.token_hash = token_hash
    restart_reports(device.id)  # a new agent state: its reports count from 1 again
    agent_cache.token_moved_on_commit(db.session, token_hash, device.id)
    audit.record(actor, "device.claim_approve", target=device.name, device_id=device.id,
                 claim_id=claim_id, serial=device.serial, ip=device.remote_ip)
    db.session.commit()
    return device


def refuse(actor: Actor, claim: Device) -> Device:
    """Refuse a claim: the claimer's record and token go (its agent hears 401); the device it
    claimed to be is untouched. Returns that device."""
    may_manage(actor)
    device = claim.claims
    audit.record(actor, "device.claim_refuse", target=device.name, device_id=device.id,
                 claim_id=claim.id, serial=claim.serial, hostname=claim.hostname,
                 ip=claim.remote_ip)
    db.session.delete(claim)  # its token is tombstoned on commit (agent_cache's hooks)
    db.session.commit()
    return device
