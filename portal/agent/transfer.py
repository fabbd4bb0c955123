"""One file from a download link into a partial file: HTTP Range resume, a bandwidth cap, SHA-256."""
import hashlib
import http.client
import logging
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger("depot.agent")
TIMEOUT = 30
PIECE = 256 * 1024


class LinkRefused(Exception):
    """The DP refused the link (403: expired or not valid): ask the server for fresh links."""


class TransferError(Exception):
    """A passing failure (network, server error, dropped connection): try again, resuming."""


class HashMismatch(Exception):
    """The whole file arrived but its SHA-256 (or size) is not the pinned one."""


class CertificateMismatch(Exception):
    """The DP node presented another TLS certificate than the one central pinned for it."""


class Stopped(Exception):
    """The download was stopped (cancel asked for, or the agent is stopping); `reason` says."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RateCap:
    """At most `rate` bytes a second over all downloads of one agent (0: no cap)."""

    def __init__(self, rate: int = 0):
        self.rate = rate
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.sent = 0

    def piece(self) -> int:
        return max(1024, min(PIECE, self.rate // 8)) if self.rate else PIECE

    def take(self, n: int, stop: threading.Event | None = None) -> None:
        if not self.rate:
            return
        with self.lock:
            self.sent += n
            now = time.monotonic()
            ahead = self.sent / self.rate - (now - self.start)
            if ahead < -1.0:  # after an idle spell: no burst of more than a second's worth
                self.start = now - self.sent / self.rate - 1.0
        if ahead > 0:
            if stop is not None:
                stop.wait(ahead)
            else:
                time.sleep(ahead)

    def reset(self) -> None:
        with self.lock:
            self.start, self.sent = time.monotonic(), 0


def normalise_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as 64 lowercase hex digits ("AB:CD:..." accepted); ValueError else.
    (The agent's copy of portal.core.tls.normalise: it imports nothing of Depot.)"""
    text = re.sub(r"[\s:\-]", "", str(value).strip().lower())
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"not a SHA-256 fingerprint: {value!r}")
    return text


class _PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection that accepts exactly the certificate with the pinned fingerprint, checked
    right after the handshake, before the request is sent (a self-signed node has no CA)."""

    def __init__(self, *args, fingerprint: str, **kw):
        super().__init__(*args, **kw)
        self.fingerprint = fingerprint

    def connect(self):
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        presented = hashlib.sha256(der).hexdigest()
        if presented != self.fingerprint:
            self.close()
            raise CertificateMismatch(f"the DP presented the TLS certificate {presented}, not "
                                      f"{self.fingerprint} that the server pinned for it")


class _PinnedHandler(urllib.request.HTTPSHandler):
    def __init__(self, fingerprint: str):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the fingerprint is the check
        super().__init__(context=context)
        self.fingerprint, self.pinned_context = fingerprint, context

    def https_open(self, req):
        def connection(host, **kw):
            kw["context"] = self.pinned_context
            return _PinnedConnection(host, fingerprint=self.fingerprint, **kw)

        return self.do_open(connection, req)


def opener_for(url: str, fingerprint: str | None):
    """urlopen, pinned to `fingerprint` for an https:// URL when the manifest gives one."""
    if fingerprint and url.lower().startswith("https://"):
        return urllib.request.build_opener(_PinnedHandler(normalise_fingerprint(fingerprint))).open
    return urllib.request.urlopen


def hash_prefix(path: str) -> tuple["hashlib._Hash", int]:
    """The SHA-256 state and size of what a partial file already holds."""
    hasher, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            hasher.update(block)
            size += len(block)
    return hasher, size


def fetch(url: str, partial: str, size: int, sha256: str, label: str, cap: RateCap,
          stop_reason, on_bytes, tls_fingerprint: str | None = None) -> None:
    """Make `partial` the whole file at `url`, resuming from what it holds. `stop_reason()`
    returns why to stop (or None), checked between pieces; `on_bytes(total_so_far)` after each.
    An https:// URL with `tls_fingerprint` is fetched from the server with that certificate only
    (CertificateMismatch otherwise)."""
    have = 0
    if os.path.exists(partial):
        if os.path.getsize(partial) > size:
            os.truncate(partial, 0)
        hasher, have = hash_prefix(partial)
    else:
        hasher = hashlib.sha256()
    if have < size:
        hasher, have = _download(url, partial, size, label, cap, stop_reason, on_bytes, hasher,
                                 have, tls_fingerprint)
    if have != size:
        raise TransferError(f"{label}: the connection ended at byte {have} of {size}")
    digest = hasher.hexdigest()
    if digest != sha256:
        os.remove(partial)
        raise HashMismatch(f"expected sha256 {sha256[:16]}..., got {digest[:16]}...")
    log.info("%s: verified (sha256 %s...)", label, digest[:16])


def _download(url, partial, size, label, cap, stop_reason, on_bytes, hasher, have,
              tls_fingerprint=None):
    headers = {"User-Agent": "depot-agent"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = opener_for(url, tls_fingerprint)(request, timeout=TIMEOUT)
    except CertificateMismatch as exc:
        raise CertificateMismatch(f"{label}: {exc}") from None
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 403:
            raise LinkRefused(f"{label}: the DP refused the link ({exc.code})") from None
        if exc.code == 416:  # what we hold is not a prefix the server can continue
            os.truncate(partial, 0)
            raise TransferError(f"{label}: the DP cannot resume at byte {have}; starting over") from None
        raise TransferError(f"{label}: the DP answered {exc.code} {exc.reason}") from None
    except OSError as exc:  # URLError included (CertificateMismatch is no OSError: never in one)
        raise TransferError(f"{label}: {getattr(exc, 'reason', exc)}") from None
    with response:
        mode = "ab"
        start = _range_start(response) if response.status == 206 else 0
        if have and response.status == 206 and start == have:
            log.info("%s: resuming at byte %d of %d", label, have, size)
        elif start:  # a range we did not ask for (a broken proxy): never write it at `have`
            os.truncate(partial, 0)
            raise TransferError(f"{label}: the DP answered from byte {start}, not {have}; "
                                "starting over")
        else:
            if have:
                log.info("%s: the DP did not resume; downloading again from byte 0", label)
            hasher, have, mode = hashlib.sha256(), 0, "wb"
            log.info("%s: downloading %d bytes", label, size)
        with open(partial, mode) as fh:
            while have < size:
                reason = stop_reason()
                if reason:
                    raise Stopped(reason)
                try:
                    block = response.read(min(cap.piece(), size - have))
                except (OSError, ValueError) as exc:
                    raise TransferError(f"{label}: the connection dropped at byte {have}: {exc}") from None
                if not block:
                    break
                fh.write(block)
                hasher.update(block)
                have += len(block)
                on_bytes(have)
                cap.take(len(block))
    return hasher, have


def _range_start(response) -> int | None:
    value = response.headers.get("Content-Range", "")  # bytes 100-999/1000
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None
