"""Secrets at rest (DP node keys, later cloud credentials): Fernet, keyed by DEPOT_ENCRYPTION_KEY.

Without DEPOT_ENCRYPTION_KEY the key is derived from SECRET_KEY, which is fine for one machine;
production sets its own, so a database backup alone does not give the DP keys away.
"""
import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from portal.services import DepotError


def _fernet() -> Fernet:
    material = current_app.config.get("DEPOT_ENCRYPTION_KEY") or current_app.config["SECRET_KEY"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"depot secrets",
               info=b"fernet").derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


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
