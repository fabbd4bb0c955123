"""Long work. The row is the truth about a job; RQ only executes it."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import isoformat, percent_done, utcnow

JOB_KINDS = ("rescan", "copy", "verify", "delete")
ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")


class Job(db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        # At most one active job per dedup key (e.g. one rescan per DP), enforced by the database.
        Index(
            "uq_jobs_active_dedup_key", "dedup_key", unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
        Index("ix_jobs_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(32))
    dp_id: Mapped[int | None] = mapped_column(
        ForeignKey("distribution_points.id", ondelete="SET NULL"), index=True
    )
    asset_key: Mapped[str | None] = mapped_column(Text)
    dedup_key: Mapped[str | None] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    # The RQ job currently carrying this row; a new one per attempt.
    rq_job_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    # Tries after a passing failure (a DP that did not answer), each after a longer wait.
    retries: Mapped[int] = mapped_column(default=0, server_default="0")
    retry_at: Mapped[datetime | None]
    # Set by each claim: a run that was taken over (its worker silent too long) writes no more.
    run_id: Mapped[str | None] = mapped_column(String(32))
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    # A copy's bytes that crossed the network; bytes_done also counts what the DP reused.
    bytes_sent: Mapped[int | None] = mapped_column(BigInteger)
    # Throughput over the last seconds of the run, as the worker measured it (services/throughput);
    # None until it has moved bytes for a while.
    bytes_per_second: Mapped[int | None] = mapped_column(BigInteger)
    files_done: Mapped[int] = mapped_column(default=0)
    files_total: Mapped[int | None]
    phase: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list] = mapped_column(JSON, default=list)
    summary: Mapped[str | None] = mapped_column(Text)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]

    dp = relationship("DistributionPoint")
    requested_by = relationship("User")

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def percent(self) -> int | None:
        return percent_done(self.state, self.bytes_done, self.bytes_total)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "dp_id": self.dp_id,
            "asset_key": self.asset_key, "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total, "bytes_sent": self.bytes_sent,
            "bytes_per_second": self.bytes_per_second,
            "files_done": self.files_done,
            "files_total": self.files_total, "phase": self.phase, "error": self.error,
            "warnings": list(self.warnings or []), "summary": self.summary,
            "attempts": self.attempts,
            "requested_by": self.requested_by.email if self.requested_by else None,
            "created_at": isoformat(self.created_at), "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
        }
