"""A local DP: a Depot DP node at a branch, reached over HTTPS with its key (the node's
certificate pinned by fingerprint, see portal.storage.node_tls), or over plain HTTP where the
admin allowed it for that DP."""
import ipaddress
import socket
import ssl
from typing import Iterator
from urllib.parse import urlsplit

import requests

from portal.core import signing, tls
from portal.core.errors import DamagedInTransit, PlanAgain, StorageRefused, StorageUnavailable
from portal.core.files import FileEntry
from portal.storage import answers
from portal.storage.answers import (UnreadableAnswer, failure_detail, failure_kind, failure_words,
                                    host_port, unreachable_words)
from portal.storage.base import Source, StorageBackend, StorageEnv, Upload, UploadState
from portal.storage.checked_address import connect_to_checked
from portal.storage.node_tls import is_pin_mismatch, pinned_session

CONNECT_TIMEOUT = 5
READ_TIMEOUT = 120  # a finish hashes the whole file on the node before it answers
SLOW_DISK = 25 * 1024 * 1024  # bytes/s a node's disk is allowed to be, in answer waits
# A delta batch covers at most this much of the file (the node holds a batch's bytes, reused
# ones included, until its turn); what it sends is at most the copy's chunk size.
BATCH_SPAN = 32 * 1024 * 1024
# What a node answers to a batch that cannot go on as planned: a passing failure, after which
# the copy plans again and resumes where assembly stands.
REPLAN = {"digest_mismatch", "chunk_unavailable", "out_of_turn", "short_batch", "conflict"}


class NodeUnreachable(StorageUnavailable):
    """The node did not answer (down, or the network between): worth trying again later."""


class NodeReplan(NodeUnreachable, PlanAgain):
    """A delta batch the node could not build as planned (a chunk it meant to reuse is not as it
    was, one arrived damaged, or an earlier batch failed): plan again and go on from there."""


class NodeFailed(NodeUnreachable):
    """The node answered with a server error (5xx but 507): worth trying again later;
    `node_status` says which."""

    def __init__(self, message: str, node_status: int):
        super().__init__(message)
        self.node_status = node_status


class NodeError(StorageRefused):
    """The node answered with an error; `node_code` and `node_status` say which. A refused key is
    the caller's input (400); a full disk stays 507; anything else is the node's trouble (502)."""

    def __init__(self, message: str, node_code: str, node_status: int):
        status = 400 if node_status in (401, 403) else 507 if node_status == 507 else None
        super().__init__(message, status=status)
        self.node_code, self.node_status = node_code, node_status


class PlainHttpRefused(StorageRefused):
    """The node's URL is plain http:// and the admin did not allow the key to go in clear: the
    DP's settings are the trouble (400), not the node."""

    def __init__(self, name: str):
        super().__init__(plain_http_message(name), code="plain_http_refused", status=400)


class CertificateChanged(StorageRefused):
    """The node presents another certificate than the pinned one: refused until an admin accepts
    the new one (`pinned` and `presented` are fingerprints)."""

    def __init__(self, name: str, pinned: str, presented: str | None):
        shown = tls.display(presented) if presented else "(could not be read)"
        super().__init__(
            f"{name} presents another TLS certificate than the pinned one, so it is not sent the "
            f"key. Pinned: {tls.display(pinned)}. Presented: {shown}. If it was replaced on "
            "purpose, compare with what the node prints and accept it on the DP's Edit page.",
            code="certificate_changed", status=409)
        self.pinned, self.presented = pinned, presented


def plain_http_message(name: str) -> str:
    return (f"{name}'s URL is plain http://, which would send the DP key across the network in "
            "clear: serve the node over HTTPS (dp-node run --self-signed, or --cert and --key) "
            "and use its https:// URL, or tick \"Allow plain HTTP\" for this DP")


class AddressRefused(StorageRefused):
    """The node's URL leads to a link-local or cloud metadata address, where Depot does not send
    a key (nor let a connection test probe) unless DEPOT_ALLOW_LINK_LOCAL_DPS allows it."""

    def __init__(self, name: str, address: str):
        super().__init__(
            f"{name}'s URL leads to {address}, a link-local or cloud metadata address: Depot "
            "does not connect there (set DEPOT_ALLOW_LINK_LOCAL_DPS=1 on the central server if "
            "a DP node really lives at such an address)", code="address_refused", status=400)


METADATA_NAMES = {"metadata.google.internal", "metadata.goog", "metadata"}
METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254",
                                                         "100.100.100.200")}


def refused_address(address: str) -> bool:
    """True for link-local addresses (169.254.0.0/16, fe80::/10) and the cloud metadata services'
    (169.254.169.254, fd00:ec2::254, Alibaba's 100.100.100.200), IPv4 inside IPv6 included.
    Loopback and private ranges are fine: branches live there."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return True  # not an address at all: nothing to connect to
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip in METADATA_ADDRESSES


def check_address(url: str, name: str,
                  allow_link_local: bool = False) -> tuple[str, ...] | None:
    """Refuse a URL whose host is, or resolves to, a link-local or metadata address (checked on
    every address the name resolves to); a name that does not resolve is NodeUnreachable.

    The addresses checked, in the resolver's order: connect to these (read_fingerprint's and
    DpNodeStorage's `addresses`), never by the name again, which a rebinding DNS server could
    answer differently the second time (portal.storage.checked_address). None when the setting
    allows any address: nothing was checked, the name is used as it is."""
    if allow_link_local:
        return None
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in METADATA_NAMES:
        raise AddressRefused(name, host)
    try:
        port = urlsplit(url).port
        found = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        raise NodeUnreachable(unreachable_words(None, host_port(url), kind="name")) from None
    addresses = tuple(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
    for address in addresses:
        if refused_address(address):
            raise AddressRefused(name, address)
    return addresses


def _origin(url: str) -> str:
    """scheme://host:port of a URL, for a detail (never a user or password in it)."""
    return f"{urlsplit(url).scheme}://{host_port(url)}"


def server_address(url: str) -> tuple[str, int]:
    """(host, port) of an https:// URL."""
    parts = urlsplit(url)
    return parts.hostname, parts.port or 443


def read_fingerprint(url: str, timeout: float = CONNECT_TIMEOUT, addresses=None) -> str:
    """The fingerprint of the certificate the server of an https:// URL presents (trusting
    nothing, sending nothing), connecting to `addresses` (check_address's) where given;
    NodeUnreachable when no TLS server answers there."""
    try:
        return tls.presented_fingerprint(*server_address(url), timeout=timeout,
                                         addresses=addresses)
    except (OSError, ssl.SSLError, ValueError) as exc:
        if failure_kind(exc) in ("refused", "name", "timeout", "unreachable"):
            raise NodeUnreachable(unreachable_words(exc, host_port(url), timeout),
                                  detail=failure_detail(exc, f"TLS to {host_port(url)}")) from None
        raise NodeUnreachable(f"{url} gives no TLS certificate (is it the node's https:// URL, "
                              "and does the node run with --self-signed or --cert?): "
                              f"{failure_words(exc, timeout)}") from None


class DpNodeStorage(StorageBackend):
    """The DP node API (`portal.dpnode`) as a storage backend."""

    hashing = "self"

    def __init__(self, dp=None, *, secret: str | None = None, env: StorageEnv | None = None,
                 url: str | None = None, name: str | None = None,
                 tls_fingerprint: str | None = None, allow_plain_http: bool = False,
                 checked_addresses: tuple[str, ...] | None = None):
        """`checked_addresses`: what check_address answered for `url` just before (a connection
        test), so the name is not resolved again."""
        super().__init__(dp, env=env)
        key = secret
        if dp is not None:
            url, name = dp.url, dp.name
            tls_fingerprint, allow_plain_http = dp.tls_fingerprint, dp.allow_plain_http
        self.url, self.key, self.name = url.rstrip("/"), key, name or "the DP node"
        self.fingerprint = tls.normalise(tls_fingerprint) if tls_fingerprint else None
        self.allow_plain_http = bool(allow_plain_http)
        self.http = pinned_session(self.fingerprint if self.is_https else None)
        self.http.headers["Authorization"] = f"Bearer {key}"
        self._features: set[str] | None = None
        self._addresses = tuple(checked_addresses) if checked_addresses else None
        self._address_checked = False

    @property
    def is_https(self) -> bool:
        return self.url.lower().startswith("https://")

    def check_transport(self) -> None:
        """Refuse, before anything is sent, to send the key over plain HTTP unless allowed, or to a
        link-local or metadata address. The name is resolved once per backend and every
        connection goes to the addresses checked."""
        if not self.is_https and not self.allow_plain_http:
            raise PlainHttpRefused(self.name)
        if not self._address_checked:
            if not self._addresses:
                allow = bool(self.env.setting("DEPOT_ALLOW_LINK_LOCAL_DPS", False))
                self._addresses = check_address(self.url, self.name, allow)
            if self._addresses:
                connect_to_checked(self.http, self._addresses)
            self._address_checked = True

    @property
    def reuses_parts(self) -> bool:
        """True when the node speaks the delta protocol (its health lists "delta"); a node from
        before it gets whole files."""
        if self._features is None:
            self.check()
        return "delta" in self._features

    def _call(self, method: str, path: str, *, stream: bool = False, timeout: float = READ_TIMEOUT,
              **kw) -> requests.Response:
        self.check_transport()
        try:
            response = self.http.request(method, f"{self.url}/dp/v1{path}", stream=stream,
                                         timeout=(CONNECT_TIMEOUT, timeout),
                                         allow_redirects=False, **kw)
        except requests.RequestException as exc:
            if self.fingerprint and is_pin_mismatch(exc):
                raise self._changed() from None
            raise NodeUnreachable(
                unreachable_words(exc, host_port(self.url), timeout),
                detail=failure_detail(exc, f"{method} {_origin(self.url)}/dp/v1{path}")) from None
        if 300 <= response.status_code < 400:
            response.close()
            raise NodeError(f"{self.name} answered with a redirect: is this the DP node's URL?",
                            "redirect", 502)
        if response.status_code < 400:
            return response
        code, message = self._error_of(response)
        if response.status_code == 401:
            refused = NodeError(f"{self.name}'s DP node refused Depot's key: re-enter the key "
                                "on its edit page", code, 401)
            refused.detail = f"{method} {_origin(self.url)}/dp/v1{path}: HTTP 401"
            raise refused
        if response.status_code >= 500 and response.status_code != 507:
            raise NodeFailed(f"{self.name} failed: {message}", response.status_code)
        raise NodeError(f"{self.name}: {message}", code, response.status_code)

    @staticmethod
    def _error_of(response: requests.Response) -> tuple[str, str]:
        """(code, message) of a node's error answer, read bounded; the message is the node's
        own words (why it refused an upload), cleaned and cut short."""
        fallback = ("http_error", f"HTTP {response.status_code}")
        try:
            error = answers.parse_object(answers.read_body(response, "the error"),
                                         "the error")["error"]
            code, message = error["code"], error["message"]
        except (UnreadableAnswer, requests.RequestException, KeyError, TypeError):
            return fallback
        if not isinstance(code, str) or not isinstance(message, str):
            return fallback
        return answers.shown(code, 40), answers.shown(message, 300) or fallback[1]

    def _changed(self) -> CertificateChanged:
        try:
            presented = read_fingerprint(self.url, addresses=self._addresses)
        except NodeUnreachable:
            presented = None
        return CertificateChanged(self.name, self.fingerprint, presented)

    # --- the storage interface -------------------------------------------------------------

    def _json(self, method: str, path: str, **kw) -> dict:
        """A call whose answer must be a JSON object of bounded size and depth (anything else is
        not a DP node talking)."""
        response = self._call(method, path, stream=True, **kw)
        try:
            data = answers.read_body(response, f"{self.name}'s answer")
        except requests.RequestException as exc:
            raise NodeUnreachable(f"{self.name}'s answer was cut off: "
                                  f"{failure_words(exc, kw.get('timeout', READ_TIMEOUT))}") \
                from None
        finally:
            response.close()
        try:
            return answers.parse_object(data, f"{self.name}'s answer")
        except UnreadableAnswer:
            raise NodeError(f"{self.name} did not answer like a DP node (no JSON object): is "
                            "the URL right?", "not_a_node", 502) from None

    def check(self, timeout: float = READ_TIMEOUT) -> dict:
        """The node's health (version, space), read typed: NodeUnreachable or NodeError when it is
        not well, UnreadableAnswer when it answers a health report Depot cannot read."""
        health = answers.health(self._json("GET", "/health", timeout=timeout), self.name)
        self._features = set(health["features"])
        return {k: health[k] for k in ("status", "version", "free_bytes", "total_bytes",
                                       "reserve_bytes")}

    def ensure_layout(self) -> None:
        self.check()  # the node keeps its own library folders

    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """The node's inventory, hashed on the node (every file again with `verify`); a stream
        cut short raises NodeUnreachable."""
        response = self._call("GET", "/inventory", stream=True,
                              params={"verify": "1"} if verify else None)
        ended, what = False, f"{self.name}'s inventory"
        try:
            for line in answers.lines(response.iter_content(64 * 1024), what):
                self.check_cancelled()
                if not line.strip():
                    continue
                record = answers.parse_object(line, f"a line of {what}")
                kind = record.get("type")
                with answers.reading(f"{what} has a record"):
                    if kind == "file":
                        yield answers.entry(FileEntry(
                            record["path"], record["size"], record["mtime_ns"],
                            sha256=record["sha256"], error=record["error"]), what)
                    elif kind == "problem":
                        problems.append(answers.shown(record["message"], 500))
                    elif kind == "end":
                        self._space = answers.space(record["free_bytes"], record["total_bytes"],
                                                    f"{what} ended with a free space")
                        ended = True
        except requests.RequestException as exc:
            raise NodeUnreachable(f"{what} was cut off: {failure_words(exc, READ_TIMEOUT)}") \
                from None
        finally:
            response.close()
        if not ended:
            raise NodeUnreachable(f"{what} was cut off before its end")

    def space(self) -> tuple[int | None, int | None]:
        if getattr(self, "_space", None) is None:
            health = self.check()
            self._space = (health["free_bytes"], health["total_bytes"])
        return self._space

    # --- uploads (copies) ------------------------------------------------------------------

    def upload(self, source: Source, state: UploadState) -> Upload:
        """The node names each upload by path, size and SHA-256 and keeps it across restarts, so
        nothing needs keeping here: asked again, it says how far the upload got. A file with a
        chunk index goes as a delta where the node speaks it."""
        if source.index is not None and self.reuses_parts:
            return _NodeDeltaUpload(self, source)
        return _NodeUpload(self, source)

    def finish_upload(self, upload_id: str, size: int) -> dict:
        """Have the node check and place the file; it hashes it all first, so the wait allows for
        a slow disk (25 MiB/s). A timeout is harmless: asked again, the node says it is done."""
        try:
            return answers.placed(self._json("POST", f"/uploads/{upload_id}/finish",
                                             timeout=READ_TIMEOUT + size / SLOW_DISK),
                                  f"{self.name} answered a finished upload")
        except NodeError as exc:
            if exc.node_code == "digest_mismatch":  # the node discarded it
                raise DamagedInTransit(exc.message) from None
            raise

    def abort_upload(self, upload_id: str) -> None:
        try:
            self._call("DELETE", f"/uploads/{upload_id}")
        except NodeError as exc:
            if exc.node_status != 404:
                raise

    def delete(self, path: str) -> None:
        """Delete a file or a folder (asset) at the node; absent is fine."""
        try:
            self._call("DELETE", "/content", params={"path": path})
        except NodeError as exc:
            if exc.node_status != 404:
                raise

    def download_link(self, path: str, ttl_seconds: int) -> str:
        return signing.sign(signing.DP_NODE, self.url, self.key, path, ttl_seconds)


class _NodeUpload(Upload):
    """An upload to a DP node: chunks at any offset, several at once; the node resumes."""

    parallel = None  # as many as the copy's DEPOT_COPY_STREAMS

    def __init__(self, backend: DpNodeStorage, source: Source):
        self.backend, self.size = backend, source.size
        upload = backend._json("POST", "/uploads", json={
            "path": source.path, "size": source.size, "sha256": source.sha256})
        with answers.reading(f"{backend.name} answered an upload"):
            self.id = answers.upload_id(upload.get("id"))
            self.offset = answers.whole(upload.get("offset", 0), "offset", high=source.size)
            if upload.get("complete") is True:  # an earlier run got it there; its answer lost
                self.done = answers.placed(upload, f"{backend.name} answered a finished upload")

    def missing(self) -> list[tuple[int, int]]:
        return [(self.offset, self.size)] if self.offset < self.size else []

    def send(self, offset: int, data: bytes) -> None:
        self.backend._json("PATCH", f"/uploads/{self.id}", data=data,
                           headers={"Upload-Offset": str(offset)})

    def finish(self) -> dict:
        try:
            return self.backend.finish_upload(self.id, self.size)
        except NodeError as exc:  # assembly stopped short of the end (a chunk given up)
            if exc.node_code in REPLAN:
                raise NodeReplan(f"{exc.message}; the copy plans again and resumes") from None
            raise

    def abort(self) -> None:
        self.backend.abort_upload(self.id)


def _read_plan(plan: dict, count: int, size: int, name: str) -> tuple[int, bytearray, int]:
    """A node's delta plan for a file of `count` chunks and `size` bytes: (the chunk assembly
    stands at, which chunks it lacks, the bytes it reuses), every number within the file."""
    with answers.reading(f"{name} answered a delta plan"):
        first = answers.whole(plan["done"], "done", high=count)
        ranges = plan["need"]
        if not isinstance(ranges, list) or len(ranges) > count:
            raise answers.UnreadableAnswer(f"{name} answered a delta plan Depot cannot read "
                                           "(need is not a list of chunk ranges)")
        need = bytearray(count)
        for pair in ranges:
            if not isinstance(pair, list) or len(pair) != 2:
                raise answers.UnreadableAnswer(f"{name} answered a delta plan Depot cannot "
                                               "read (need is not a list of chunk ranges)")
            start = answers.whole(pair[0], "a range's start", high=count)
            end = answers.whole(pair[1], "a range's end", low=start, high=count)
            need[start:end] = b"\x01" * (end - start)
        reused = answers.whole(plan["reused_bytes"], "reused_bytes", high=size)
    return first, need, reused


class _NodeDeltaUpload(Upload):
    """A delta upload to a DP node: the node is told the file's chunk index, answers which chunks
    it lacks, and builds the file in order from its own chunks and the ones sent here, in batches
    of consecutive chunks (several in flight: a batch early for its turn waits at the node)."""

    parallel = None
    reads_itself = True

    def __init__(self, backend: DpNodeStorage, source: Source):
        self.backend, self.source, self.size = backend, source, source.size
        self.index = source.index
        self.offsets = [*self.index.offsets(), self.size]
        self.batches: dict[int, tuple[int, int]] = {}
        upload = backend._json("POST", "/uploads", json={
            "path": source.path, "size": source.size, "sha256": source.sha256})
        with answers.reading(f"{backend.name} answered an upload"):
            self.id = answers.upload_id(upload.get("id"))
            if upload.get("complete") is True:  # an earlier run got it there; its answer lost
                self.done = answers.placed(upload, f"{backend.name} answered a finished upload")
                return
        plan = backend._json("PUT", f"/uploads/{self.id}/index", data=self.index.pack(),
                             headers={"Content-Type": "application/octet-stream"})
        self.first, self.need, self.reused = _read_plan(plan, len(self.index), self.size,
                                                        backend.name)

    def missing(self) -> list[tuple[int, int]]:
        start = self.offsets[self.first]
        return [(start, self.size)] if start < self.size else []

    def pieces(self, chunk: int):
        """Batches of consecutive chunks from where assembly stands: up to `chunk` bytes (the
        copy's DEPOT_COPY_CHUNK) to send and BATCH_SPAN of the file each."""
        number, count = self.first, len(self.index)
        while number < count:
            first, sent = number, 0
            while number < count and self.offsets[number + 1] - self.offsets[first] <= BATCH_SPAN:
                length = self.index.lengths[number] if self.need[number] else 0
                if sent and sent + length > chunk:
                    break
                sent += length
                number += 1
            number = max(number, first + 1)
            self.batches[self.offsets[first]] = (first, number)
            yield self.offsets[first], self.offsets[number] - self.offsets[first]

    def _body(self, first: int, last: int) -> bytes:
        """The bytes of the batch's chunks the node lacks, read at central in runs."""
        parts, run = [], None
        for number in range(first, last):
            if not self.need[number]:
                continue
            start, end = self.offsets[number], self.offsets[number + 1]
            if run is not None and run[1] == start:
                run[1] = end
            else:
                if run is not None:
                    parts.append(run)
                run = [start, end]
        if run is not None:
            parts.append(run)
        body = b"".join(self.source.read(start, end - start) for start, end in parts)
        if len(body) != sum(end - start for start, end in parts):
            raise StorageRefused("a central file got shorter while being copied: rescan central")
        return body

    def send(self, offset: int, data: bytes) -> None:
        raise NotImplementedError("a delta upload reads its batches itself (send_range)")

    def send_range(self, offset: int, length: int, take) -> int:
        first, last = self.batches[offset]
        body = self._body(first, last)
        take(len(body))
        try:
            self.backend._json("POST", f"/uploads/{self.id}/chunks",
                               params={"first": first, "last": last}, data=body,
                               headers={"Content-Type": "application/octet-stream"},
                               timeout=READ_TIMEOUT + length / SLOW_DISK)
        except NodeError as exc:
            if exc.node_code in REPLAN:
                raise NodeReplan(f"{exc.message}; the copy plans again and resumes") from None
            raise
        return len(body)

    def finish(self) -> dict:
        try:
            return self.backend.finish_upload(self.id, self.size)
        except NodeError as exc:  # assembly stopped short of the end (a chunk given up)
            if exc.node_code in REPLAN:
                raise NodeReplan(f"{exc.message}; the copy plans again and resumes") from None
            raise

    def abort(self) -> None:
        self.backend.abort_upload(self.id)
