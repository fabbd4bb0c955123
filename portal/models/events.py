"""What people are told (notifications) and what people did (audit)."""
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import isoformat, utcnow


class Notification(db.Model):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_read", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
    dp_id: Mapped[int | None] = mapped_column(ForeignKey("distribution_points.id", ondelete="SET NULL"))
    job_id: Mapped[str | None] = mapped_column(String(36))
    deployment_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]

    def to_dict(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "level": self.level, "message": self.message,
            "dp_id": self.dp_id, "job_id": self.job_id, "deployment_id": self.deployment_id,
            "created_at": isoformat(self.created_at),
            "read": self.read_at is not None,
        }


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(254))  # the email at the time, or "system"
    via: Mapped[str] = mapped_column(String(16))  # console, api, cli, system
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))

    def to_dict(self) -> dict:
        return {
            "id": self.id, "at": isoformat(self.created_at), "actor": self.actor, "via": self.via,
            "action": self.action, "target": self.target, "details": self.details or {},
            "ip": self.ip,
        }
