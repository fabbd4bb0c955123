"""Secrets at rest (DP node keys, cloud keys and tokens, upload session URLs, enrollment tokens,
the authenticator keys of two-step sign-in):
Fernet, keyed by DEPOT_ENCRYPTION_KEY.

DEPOT_ENCRYPTION_KEY may list several keys, comma-separated: the first encrypts, every one
decrypts (MultiFernet). To rotate, put the new key first, run `flask --app wsgi secrets rotate`
(every stored secret is encrypted again with it), then drop the old key. Without
DEPOT_ENCRYPTION_KEY the key is derived from SECRET_KEY, which is fine for one machine; production
sets its own, so a database backup alone does not give the secrets away.

Every encrypted column is listed in `encrypted_columns`: a new one must be added there, or a
rotation leaves it behind and dropping the old key loses it.
"""
import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from portal.core.errors import DepotError


def _derive(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"depot secrets",
               info=b"fernet").derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _fernet() -> MultiFernet:
    configured = current_app.config.get("DEPOT_ENCRYPTION_KEY") or ""
    keys = [k.strip() for k in configured.split(",") if k.strip()]
    return MultiFernet([_derive(k) for k in keys or [current_app.config["SECRET_KEY"]]])


def encrypt(value: str) -> str:
    """The value, encrypted and authenticated, as text for the database."""
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str, what: str = "a stored secret",
            fix: str = "enter it again where it was first entered") -> str:
    """The value back; an error naming `what` could not be read and how to `fix` it (what to
    enter again, or create anew) if the key changed since it was stored."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise DepotError(f"{what} cannot be decrypted: was DEPOT_ENCRYPTION_KEY changed without "
                         "`flask secrets rotate`? Put the old key back in the list (after the "
                         f"new one), or {fix}.", code="secret_unreadable", status=500) from None


def dp_secret(dp) -> str:
    """A DP's stored key or credentials, decrypted; the advice says what to enter for that DP."""
    if dp.kind == "local":
        fix = f"enter {dp.name}'s node key again (Distribution points, Edit)"
    elif dp.provider == "s3":
        fix = f"enter {dp.name}'s access keys again (Distribution points, Edit)"
    else:
        fix = f"reconnect {dp.name} (Distribution points, Reconnect)"
    return decrypt(dp.secret, f"the credentials of {dp.name}", fix)


def rotate(token: str) -> str:
    """The same secret encrypted with the first key (InvalidToken if no key opens it)."""
    return _fernet().rotate(token.encode()).decode()


def encrypted_columns() -> list[tuple[str, object]]:
    """(what, column) for every encrypted column: what `rotate_all` encrypts again."""
    from portal.models import DistributionPoint, EnrollmentToken, UploadSession, User

    return [("distribution points", DistributionPoint.secret),
            ("upload sessions", UploadSession.data),
            ("enrollment tokens", EnrollmentToken.secret),
            ("authenticator keys", User.totp_secret)]


def rotate_all() -> dict[str, int]:
    """Encrypt every stored secret again with the first key: {what: how many}. All or nothing:
    InvalidToken (nothing changed) if any secret opens with none of the keys."""
    from sqlalchemy import select

    from portal.extensions import db

    counts = {}
    try:
        for what, column in encrypted_columns():
            counts[what] = 0
            model = column.class_
            for row in db.session.scalars(select(model).where(column.is_not(None))):
                setattr(row, column.key, rotate(getattr(row, column.key)))
                counts[what] += 1
    except InvalidToken:
        db.session.rollback()  # all or nothing
        raise
    db.session.commit()
    return counts
