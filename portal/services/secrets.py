"""Secrets at rest (DP node keys, S3 keys, OAuth tokens, upload session URLs): Fernet, keyed by
DEPOT_ENCRYPTION_KEY.

DEPOT_ENCRYPTION_KEY may list several keys, comma-separated: the first encrypts, every one
decrypts (MultiFernet). To rotate, put the new key first, run `flask --app wsgi secrets rotate`
(every stored secret is encrypted again with it), then drop the old key. Without
DEPOT_ENCRYPTION_KEY the key is derived from SECRET_KEY, which is fine for one machine; production
sets its own, so a database backup alone does not give the secrets away.
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


def decrypt(token: str) -> str:
    """The value back; a clear error if the key changed since it was stored."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise DepotError("a stored secret cannot be decrypted: was DEPOT_ENCRYPTION_KEY changed? "
                         "Enter the DP's key again.", code="secret_unreadable", status=500) from None


def rotate(token: str) -> str:
    """The same secret encrypted with the first key (InvalidToken if no key opens it)."""
    return _fernet().rotate(token.encode()).decode()


def rotate_all() -> dict[str, int]:
    """Encrypt every stored secret again with the first key: {what: how many}."""
    from portal.extensions import db
    from portal.models import DistributionPoint, UploadSession

    counts = {"distribution points": 0, "upload sessions": 0}
    try:
        for dp in db.session.query(DistributionPoint).filter(DistributionPoint.secret.is_not(None)):
            dp.secret = rotate(dp.secret)
            counts["distribution points"] += 1
        for upload in db.session.query(UploadSession):
            upload.data = rotate(upload.data)
            counts["upload sessions"] += 1
    except InvalidToken:
        db.session.rollback()  # all or nothing
        raise
    db.session.commit()
    return counts
