"""Endpoints: enrollment tokens, devices, the groups they sit in, and boundaries (subnet -> DP)."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import isoformat, utcnow


class EnrollmentToken(db.Model):
    """What an agent shows once to enroll; devices enrolled with it land in its group."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # The SHA-256 finds the token; the encrypted copy lets admins download the installer again.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(Text)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("device_groups.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    uses: Mapped[int] = mapped_column(default=0)

    group = relationship("DeviceGroup")
    created_by = relationship("User")

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        return "expired" if self.expires_at <= utcnow() else "valid"

    def to_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "state": self.state,
            "group_id": self.group_id, "created_at": isoformat(self.created_at),
            "expires_at": isoformat(self.expires_at), "revoked": self.revoked_at is not None,
            "last_used_at": isoformat(self.last_used_at), "uses": self.uses,
        }


class DeviceGroup(db.Model):
    """Devices deployed alike: a preferred DP, then an ordered list of fallbacks."""

    __tablename__ = "device_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    preferred_dp_id: Mapped[int | None] = mapped_column(
        ForeignKey("distribution_points.id", ondelete="SET NULL"))
    # DP ids in the order they are tried after the preferred one.
    fallback_dp_ids: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    preferred_dp = relationship("DistributionPoint")

    def to_dict(self, device_count: int | None = None) -> dict:
        data = {
            "id": self.id, "name": self.name, "description": self.description,
            "preferred_dp_id": self.preferred_dp_id,
            "fallback_dp_ids": list(self.fallback_dp_ids or []),
            "created_at": isoformat(self.created_at),
        }
        if device_count is not None:
            data["device_count"] = device_count
        return data


class Boundary(db.Model):
    """An IP subnet whose devices download from one DP (the most specific subnet wins)."""

    __tablename__ = "boundaries"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    cidr: Mapped[str] = mapped_column(String(64), unique=True)  # normalised: 10.2.0.0/16
    dp_id: Mapped[int] = mapped_column(ForeignKey("distribution_points.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dp = relationship("DistributionPoint")

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "cidr": self.cidr, "dp_id": self.dp_id,
                "created_at": isoformat(self.created_at)}


class Device(db.Model):
    """An enrolled endpoint, as its agent last described it."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)  # the hostname, or an admin's name
    # The hostname its agent last reported: only a change of it renames the device again.
    hostname: Mapped[str | None] = mapped_column(String(255))
    serial: Mapped[str] = mapped_column(String(128), default="", index=True)
    mac_addresses: Mapped[list] = mapped_column(JSON, default=list)
    ip_addresses: Mapped[list] = mapped_column(JSON, default=list)
    # The address its requests come from (what boundaries match first when it is not private).
    remote_ip: Mapped[str | None] = mapped_column(String(64))
    os: Mapped[str] = mapped_column(String(255), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_groups.id", ondelete="SET NULL"), index=True)
    # Only the SHA-256 of the device token is kept.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enrollment_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollment_tokens.id", ondelete="SET NULL"))
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(index=True)
    # Bytes free under the agent's target folder, as last reported.
    free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # A pending claim: an enrollment whose serial and MAC match this known device, made without
    # its device token. It gets a token but no work until an admin approves (the two records
    # merge) or refuses (it is deleted); see `portal.services.claims`.
    claims_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True)

    group = relationship("DeviceGroup")
    claims = relationship("Device", remote_side=[id], foreign_keys=[claims_device_id])

    @property
    def is_claim(self) -> bool:
        """Whether this record is a pending claim on another device (no work, no links)."""
        return self.claims_device_id is not None

    def to_dict(self, status: str | None = None) -> dict:
        return {
            "id": self.id, "name": self.name, "serial": self.serial,
            "mac_addresses": list(self.mac_addresses or []),
            "ip_addresses": list(self.ip_addresses or []), "remote_ip": self.remote_ip,
            "os": self.os, "agent_version": self.agent_version, "group_id": self.group_id,
            "group": self.group.name if self.group else None, "status": status,
            "enrolled_at": isoformat(self.enrolled_at), "last_seen_at": isoformat(self.last_seen_at),
            "free_bytes": self.free_bytes, "claims_device_id": self.claims_device_id,
        }
