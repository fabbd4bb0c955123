"""A requests session that trusts a DP node's certificate by its pinned fingerprint alone.

A branch's DP node usually has a self-signed certificate (`dp-node run --self-signed`), so no CA
vouches for it; central pins the SHA-256 fingerprint the admin was shown at Add local (trust on
first use) and urllib3's `assert_fingerprint` refuses any other certificate before a byte of the
request (and so the DP key) is sent. Host names are not checked: the pin names the certificate.
"""
import requests
from requests.adapters import HTTPAdapter

from portal.core import tls


class PinnedAdapter(HTTPAdapter):
    """HTTPS through connections that accept exactly one certificate: the pinned one."""

    def __init__(self, fingerprint: str, **kw):
        self.fingerprint = tls.normalise(fingerprint)
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kw)

    def cert_verify(self, conn, url, verify, cert):
        # No CA check (a self-signed certificate has none); the fingerprint is the check.
        super().cert_verify(conn, url, False, cert)
        conn.assert_fingerprint = self.fingerprint

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, False, cert)
        pool_kwargs["assert_fingerprint"] = self.fingerprint
        return host_params, pool_kwargs


def pinned_session(fingerprint: str | None) -> requests.Session:
    """A session for one DP node: HTTPS pinned to `fingerprint` when one is given; without one,
    requests' defaults (a CA-signed certificate, or plain HTTP where the admin allowed it)."""
    session = requests.Session()
    if fingerprint:
        session.verify = False  # the adapter checks the pin instead
        session.mount("https://", PinnedAdapter(fingerprint))
    return session


def is_pin_mismatch(exc: BaseException) -> bool:
    """True when a requests error is urllib3 refusing a certificate that is not the pinned one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if "fingerprints did not match" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__ or (exc.args[0] if exc.args and isinstance(
            exc.args[0], BaseException) else None)
    return False
