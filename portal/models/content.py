"""Distribution points, what each one holds file by file, and the assets those files make up."""
import json
from datetime import datetime, timezone

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import isoformat, utcnow

DP_KINDS = ("central", "local", "cloud")


def _bytes(value) -> int | None:
    """A stored byte count as the API shows it: a whole number, or None for anything else (a
    value a DP answered before answers were read typed)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None
# The cloud settings an API answer may show (never keys or tokens, which live in `secret`).
PUBLIC_SETTINGS = ("endpoint_url", "region", "bucket", "prefix", "folder", "account")
# Status of an asset at a DP relative to central. `missing` is derived (no row), `copying` comes
# from the copy jobs of the next issue.
ASSET_STATUSES = ("current", "outdated", "missing", "copying", "failed", "only-here", "unverified")


class DistributionPoint(db.Model):
    __tablename__ = "distribution_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(32))
    site: Mapped[str] = mapped_column(String(100), default="")
    url: Mapped[str | None] = mapped_column(String(500))
    root: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="online")
    status_reason: Mapped[str | None] = mapped_column(String(500))
    # When `status` last changed (set_dp_status): "offline since 10:42". None: not known.
    status_changed_at: Mapped[datetime | None]
    free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    last_scan_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The DP node's key (local) or the cloud credentials, encrypted (services.secrets).
    secret: Mapped[str | None] = mapped_column(Text)
    # Disabled for maintenance: no copies, no deployments; health checks leave it alone.
    disabled: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    bandwidth_limit: Mapped[int | None] = mapped_column(BigInteger)  # bytes/s for copies; None: no cap
    allowed_hours: Mapped[str | None] = mapped_column(String(11))  # "22-06": copies only then
    checked_at: Mapped[datetime | None]
    # What a cloud DP needs that is not secret, as JSON: S3 endpoint, region, bucket, prefix; an
    # OAuth DP's folder and the account it is connected to (see `settings`).
    config: Mapped[str | None] = mapped_column(Text)
    # A DP node's TLS certificate, pinned at Add local (trust on first use): its SHA-256, 64
    # lowercase hex digits (portal.core.tls). None: no pin (plain HTTP, or a CA-signed URL).
    tls_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The admin allowed the DP key to cross the network in clear (an http:// node URL).
    allow_plain_http: Mapped[bool] = mapped_column(default=False, server_default=sa_false())

    @property
    def plain_http(self) -> bool:
        """A DP node reached over plain HTTP (its key crosses the network in clear)."""
        return self.kind == "local" and bool(self.url) and self.url.startswith("http://")

    @property
    def settings(self) -> dict:
        return json.loads(self.config) if self.config else {}

    @settings.setter
    def settings(self, value: dict) -> None:
        self.config = json.dumps(value, sort_keys=True)

    @property
    def is_central(self) -> bool:
        return self.kind == "central"

    def to_dict(self, counts: dict | None = None) -> dict:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "provider": self.provider,
            "site": self.site, "url": self.url, "status": self.status,
            "status_reason": self.status_reason, "free_bytes": _bytes(self.free_bytes),
            "total_bytes": _bytes(self.total_bytes), "last_scan_at": isoformat(self.last_scan_at),
            "disabled": self.disabled, "bandwidth_limit": self.bandwidth_limit,
            "allowed_hours": self.allowed_hours, "counts": counts or {},
            "tls_fingerprint": self.tls_fingerprint, "allow_plain_http": self.allow_plain_http,
            # Only what is not secret: keys and tokens never leave the database.
            "settings": {k: v for k, v in self.settings.items() if k in PUBLIC_SETTINGS},
        }


class InventoryFile(db.Model):
    """One regular file under a library folder of a DP, as the last scan saw it."""

    __tablename__ = "inventory_files"
    __table_args__ = (UniqueConstraint("dp_id", "path", name="uq_inventory_files_dp_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dp_id: Mapped[int] = mapped_column(ForeignKey("distribution_points.id", ondelete="CASCADE"))
    # Relative to the DP root, '/'-separated, escaped (see services.names) so any name fits in text.
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(500))
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The provider hashes of this version, as JSON ({"quickxor": ..., "md5": ..., "dropbox": ...}):
    # at central the ones computed at ingest, at a cloud DP the ones the provider reported.
    hashes: Mapped[str | None] = mapped_column(Text)


class UploadSession(db.Model):
    """What a backend needs to resume one file's upload to a DP in another process (an S3
    UploadId, a provider's upload session URL), encrypted: a session URL is a credential."""

    __tablename__ = "upload_sessions"
    __table_args__ = (UniqueConstraint("dp_id", "path", name="uq_upload_sessions_dp_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dp_id: Mapped[int] = mapped_column(ForeignKey("distribution_points.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Asset(db.Model):
    """A top-level entry of a library folder at one DP, with its digest and status against central."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("dp_id", "key", name="uq_assets_dp_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dp_id: Mapped[int] = mapped_column(ForeignKey("distribution_points.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    library: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(8))  # file or folder
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(default=0)
    digest: Mapped[str | None] = mapped_column(String(64))
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="unverified")
    status_reason: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def modified_at(self) -> datetime:
        return datetime.fromtimestamp(self.mtime_ns / 1e9, timezone.utc).replace(tzinfo=None)

    def to_dict(self) -> dict:
        return {
            "key": self.key, "library": self.library, "name": self.name, "kind": self.kind,
            "size": self.size, "file_count": self.file_count, "digest": self.digest,
            "modified_at": isoformat(self.modified_at), "status": self.status,
            "status_reason": self.status_reason,
        }
