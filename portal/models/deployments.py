"""Deployments: one image (plus packs and an answer file) sent to one device from one DP."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import isoformat, percent_done, utcnow

DEPLOYMENT_STATES = ("pending", "downloading", "applying", "succeeded", "failed", "cancelled")
ACTIVE_DEPLOYMENT_STATES = ("pending", "downloading", "applying")
FINISHED_DEPLOYMENT_STATES = ("succeeded", "failed", "cancelled")


class Deployment(db.Model):
    __tablename__ = "deployments"
    __table_args__ = (
        # One unfinished deployment per device at a time, enforced by the database.
        Index(
            "uq_deployments_active_device", "device_id", unique=True,
            sqlite_where=text("state IN ('pending', 'downloading', 'applying')"),
            postgresql_where=text("state IN ('pending', 'downloading', 'applying')"),
        ),
        Index("ix_deployments_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Deployments created by one request (a whole group) share a batch id.
    batch_id: Mapped[str] = mapped_column(String(36), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"),
                                                 index=True)
    device_name: Mapped[str] = mapped_column(String(255))  # kept for history if the device goes
    group_id: Mapped[int | None] = mapped_column(ForeignKey("device_groups.id", ondelete="SET NULL"))
    dp_id: Mapped[int | None] = mapped_column(
        ForeignKey("distribution_points.id", ondelete="SET NULL"), index=True)
    dp_name: Mapped[str] = mapped_column(String(100))
    # Why this DP: "boundary 10.2.0.0/16 (Seattle LAN)", "preferred DP of group Seattle office".
    selection_reason: Mapped[str] = mapped_column(String(500), default="")
    image: Mapped[str] = mapped_column(Text)  # asset keys: Images/Win11.wim
    platform_pack: Mapped[str | None] = mapped_column(Text)
    application_packs: Mapped[list] = mapped_column(JSON, default=list)
    answer_file: Mapped[str | None] = mapped_column(Text)
    # What was deployed, pinned at creation: [{key, digest, files: [{path, size, sha256}]}].
    assets: Mapped[list] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    phase: Mapped[str | None] = mapped_column(String(200))  # the agent's last words: "Images/x.wim"
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    # The highest report number applied: a report sent again after a lost answer changes nothing.
    report_seq: Mapped[int] = mapped_column(default=0)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    reported_at: Mapped[datetime | None]

    device = relationship("Device")
    group = relationship("DeviceGroup")
    dp = relationship("DistributionPoint")
    requested_by = relationship("User")

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_DEPLOYMENT_STATES

    @property
    def percent(self) -> int | None:
        return percent_done(self.state, self.bytes_done, self.bytes_total)

    @property
    def asset_keys(self) -> list[str]:
        return [a["key"] for a in self.assets or []]

    def to_dict(self) -> dict:
        return {
            "id": self.id, "batch_id": self.batch_id, "device_id": self.device_id,
            "device_name": self.device_name, "group_id": self.group_id, "dp_id": self.dp_id,
            "dp_name": self.dp_name, "selection_reason": self.selection_reason,
            "image": self.image, "platform_pack": self.platform_pack,
            "application_packs": list(self.application_packs or []),
            "answer_file": self.answer_file,
            "assets": [{"key": a["key"], "digest": a["digest"]} for a in self.assets or []],
            "state": self.state, "phase": self.phase, "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total, "percent": self.percent, "error": self.error,
            "cancel_requested": self.cancel_requested,
            "requested_by": self.requested_by.email if self.requested_by else None,
            "created_at": isoformat(self.created_at), "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at), "reported_at": isoformat(self.reported_at),
        }
