"""People and their API tokens."""
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import isoformat, utcnow

ROLES = ("admin", "technician", "viewer")


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    # For viewers: the sites whose DPs they may see; empty means every site.
    sites: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    # Stored in the console session at sign-in (as part of get_id) and checked on every request:
    # raising it ends every console session of this user (sign-out, password, role, deactivation).
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # Two-step sign-in (services/two_factor.py): the authenticator's key, encrypted with
    # services/secrets.py (set while enrolling, confirmed when totp_enabled_at is set), and the
    # last 30-second step whose code was accepted (no code is taken twice).
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None]
    selected_dp_id: Mapped[int | None] = mapped_column(
        ForeignKey("distribution_points.id", ondelete="SET NULL")
    )
    # The bell tells everyone of failures and of what needs someone; routine successes (a copy or
    # a rescan finished) only those who ask for them (Settings, Notifications).
    notify_successes: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list["ApiToken"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    recovery_codes: Mapped[list["RecoveryCode"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        """What Flask-Login keeps in the session: the id and the session version, "7:3"."""
        return f"{self.id}:{self.session_version}"

    def end_sessions(self) -> None:
        """End every console session of this user (they sign in again); API tokens are kept."""
        self.session_version = (self.session_version or 0) + 1

    def to_dict(self) -> dict:
        return {
            "id": self.id, "email": self.email, "role": self.role, "sites": list(self.sites or []),
            "active": self.active, "created_at": isoformat(self.created_at),
        }


class ApiToken(db.Model):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # Only the SHA-256 of the token is kept; the prefix lets people tell tokens apart.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")

    def to_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix,
            "created_at": isoformat(self.created_at), "last_used_at": isoformat(self.last_used_at),
            "revoked": self.revoked_at is not None,
        }


class RecoveryCode(db.Model):
    """A one-time code that stands in for the authenticator (10 per person, shown once): only
    its SHA-256 is kept, and used_at once it has signed someone in."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]
