"""Download links for endpoints: HMAC-signed with the DP's key, valid until they expire.

The central server makes them (it knows each DP's key); the node checks them without asking
anyone. The signature covers the path and the expiry time, with a key derived for this purpose
only, so a link can be neither pointed at another file nor extended.
"""
import hashlib
import hmac
import time
from urllib.parse import urlencode

from portal.services import DepotError


class LinkRefused(DepotError):
    code, status = "link_refused", 403


def _signature(key: str, path: str, expires: int) -> str:
    download_key = hmac.new(key.encode(), b"depot download link", hashlib.sha256).digest()
    return hmac.new(download_key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def sign(base_url: str, key: str, path: str, ttl_seconds: int, now: float | None = None) -> str:
    """A link to download `path` from the node at `base_url`, valid for `ttl_seconds`."""
    expires = int((now if now is not None else time.time()) + ttl_seconds)
    query = urlencode({"path": path, "expires": expires, "sig": _signature(key, path, expires)})
    return f"{base_url.rstrip('/')}/dp/v1/download?{query}"


def check(key: str, path: str, expires, sig) -> None:
    """Refuse a link that was not signed with this key, or has expired."""
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        raise LinkRefused("the download link is malformed") from None
    if not isinstance(sig, str) or not sig.isascii() or \
            not hmac.compare_digest(_signature(key, path, expires), sig):
        raise LinkRefused("the download link's signature is not valid")
    if expires < time.time():
        raise LinkRefused("the download link has expired; ask the server for a new one")
