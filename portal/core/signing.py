"""Signed, expiring download links: the one way Depot lets an endpoint download without a login.

A link names a file (and, for the cloud relay, its DP) and when it expires; its `sig` is an HMAC
over those with a key derived from a secret for one kind of link only, so a link can be neither
pointed at another file nor extended, and a secret that signs one kind signs no other.

The kinds (a kind's purpose string is part of every signature: changing it breaks the links of
DP nodes already in the field):
- `DP_NODE`: a DP node's /dp/v1/download, keyed by the DP's key; the node checks it alone;
  central's files too, served by central's own node and keyed by DEPOT_CENTRAL_DP_KEY;
- `CENTRAL`: central's files as linked before central had a node (console's /agent/v1/download,
  keyed by SECRET_KEY): still checked there, then redirected to central's node;
- `CLOUD_RELAY`: central's relay of a Google Drive file, keyed by SECRET_KEY, scoped to the DP.
"""
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from portal.core.errors import LinkRefused

MAX_LINK_SECONDS = 7 * 86400  # as long as an S3 presigned link may live, no longer


@dataclass(frozen=True)
class LinkKind:
    """One kind of link: what its key is derived for, and the route it points at (`{scope}` is
    filled with the link's scope)."""

    purpose: bytes
    route: str


DP_NODE = LinkKind(b"depot download link", "/dp/v1/download")
CENTRAL = LinkKind(b"depot central download link", "/agent/v1/download")
CLOUD_RELAY = LinkKind(b"depot cloud download link", "/cloud-links/v1/{scope}/download")


def signature(kind: LinkKind, secret: str, path: str, expires: int, scope=None) -> str:
    """HMAC of (scope, path, expiry) with a key derived from `secret` for this kind only."""
    key = hmac.new(secret.encode(), kind.purpose, hashlib.sha256).digest()
    message = f"{path}\n{expires}" if scope is None else f"{scope}\n{path}\n{expires}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(kind: LinkKind, base_url: str, secret: str, path: str, ttl_seconds: int, *, scope=None,
         now: float | None = None) -> str:
    """A link to `path` on the server at `base_url`, valid for `ttl_seconds`."""
    expires = int((now if now is not None else time.time()) + ttl_seconds)
    return sign_until(kind, base_url, secret, path, expires, scope=scope)


def sign_until(kind: LinkKind, base_url: str, secret: str, path: str, expires: int, *,
               scope=None) -> str:
    """A link to `path` on the server at `base_url` that expires at `expires` (a Unix time)."""
    query = urlencode({"path": path, "expires": expires,
                       "sig": signature(kind, secret, path, expires, scope)})
    return f"{base_url.rstrip('/')}{kind.route.format(scope=scope)}?{query}"


def check(kind: LinkKind, secret: str, path, expires, sig, *, scope=None) -> None:
    """LinkRefused, saying why, unless the link was signed with this secret and has not expired."""
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        raise LinkRefused("the download link is malformed") from None
    if not isinstance(path, str) or not isinstance(sig, str) or not sig.isascii() or \
            not hmac.compare_digest(signature(kind, secret, path, expires, scope), sig):
        raise LinkRefused("the download link's signature is not valid")
    if expires < time.time():
        raise LinkRefused("the download link has expired; ask the server for a new one")
