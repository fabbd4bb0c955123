"""A local DP: a Depot DP node at a branch, reached over HTTPS with its key (the node's
certificate pinned by fingerprint, see portal.storage.node_tls), or over plain HTTP where the
admin allowed it for that DP."""
import json
import ssl
from typing import Iterator
from urllib.parse import urlsplit

import requests

from portal.core import signing, tls
from portal.core.errors import DamagedInTransit, PlanAgain, StorageRefused, StorageUnavailable
from portal.core.files import FileEntry
from portal.storage.base import Source, StorageBackend, StorageEnv, Upload, UploadState, json_object
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


def server_address(url: str) -> tuple[str, int]:
    """(host, port) of an https:// URL."""
    parts = urlsplit(url)
    return parts.hostname, parts.port or 443


def read_fingerprint(url: str, timeout: float = CONNECT_TIMEOUT) -> str:
    """The fingerprint of the certificate the server of an https:// URL presents (trusting
    nothing, sending nothing); NodeUnreachable when no TLS server answers there."""
    try:
        return tls.presented_fingerprint(*server_address(url), timeout=timeout)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise NodeUnreachable(f"{url} gives no TLS certificate (is it the node's https:// URL, "
                              f"and does the node run with --self-signed or --cert?): "
                              f"{type(exc).__name__}: {exc}") from None


class DpNodeStorage(StorageBackend):
    """The DP node API (`portal.dpnode`) as a storage backend."""

    hashing = "self"

    def __init__(self, dp=None, *, secret: str | None = None, env: StorageEnv | None = None,
                 url: str | None = None, name: str | None = None,
                 tls_fingerprint: str | None = None, allow_plain_http: bool = False):
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

    @property
    def is_https(self) -> bool:
        return self.url.lower().startswith("https://")

    def check_transport(self) -> None:
        """Refuse, before anything is sent, to send the key over plain HTTP unless allowed."""
        if not self.is_https and not self.allow_plain_http:
            raise PlainHttpRefused(self.name)

    @property
    def reuses_parts(self) -> bool:
        """True when the node speaks the delta protocol (its health lists "delta"); a node from
        before it gets whole files."""
        if self._features is None:
            self._features = set(self._json("GET", "/health").get("features") or ())
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
            raise NodeUnreachable(f"{self.name} ({self.url}) does not answer: "
                                  f"{type(exc).__name__}") from None
        if 300 <= response.status_code < 400:
            raise NodeError(f"{self.name} answered with a redirect: is this the DP node's URL?",
                            "redirect", 502)
        if response.status_code < 400:
            return response
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", f"HTTP {response.status_code}"
        if response.status_code == 401:
            message = f"{self.name} refused the key: check the key entered for this DP"
        elif response.status_code >= 500 and response.status_code != 507:
            raise NodeUnreachable(f"{self.name} failed: {message}")
        raise NodeError(f"{self.name}: {message}", code, response.status_code)

    def _changed(self) -> CertificateChanged:
        try:
            presented = read_fingerprint(self.url)
        except NodeUnreachable:
            presented = None
        return CertificateChanged(self.name, self.fingerprint, presented)

    # --- the storage interface -------------------------------------------------------------

    def _json(self, method: str, path: str, **kw) -> dict:
        """A call whose answer must be a JSON object (anything else is not a DP node talking)."""
        body = json_object(self._call(method, path, **kw))
        if body is None:
            raise NodeError(f"{self.name} did not answer like a DP node (no JSON): is the URL "
                            "right?", "not_a_node", 502)
        return body

    def check(self, timeout: float = READ_TIMEOUT) -> dict:
        """The node's health (version, space); NodeUnreachable or NodeError when it is not well."""
        health = self._json("GET", "/health", timeout=timeout)
        return {k: health.get(k) for k in ("status", "version", "free_bytes", "total_bytes",
                                           "reserve_bytes")}

    def ensure_layout(self) -> None:
        self.check()  # the node keeps its own library folders

    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """The node's inventory, hashed on the node (every file again with `verify`); a stream
        cut short raises NodeUnreachable."""
        response = self._call("GET", "/inventory", stream=True,
                              params={"verify": "1"} if verify else None)
        ended = False
        try:
            for line in response.iter_lines():
                self.check_cancelled()
                if not line:
                    continue
                record = json.loads(line)
                if record["type"] == "file":
                    yield FileEntry(record["path"], record["size"], record["mtime_ns"],
                                    sha256=record["sha256"], error=record["error"])
                elif record["type"] == "problem":
                    problems.append(record["message"])
                elif record["type"] == "end":
                    self._space = (record["free_bytes"], record["total_bytes"])
                    ended = True
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise NodeUnreachable(f"{self.name}'s inventory was cut off: {type(exc).__name__}") \
                from None
        finally:
            response.close()
        if not ended:
            raise NodeUnreachable(f"{self.name}'s inventory was cut off before its end")

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
            return self._json("POST", f"/uploads/{upload_id}/finish",
                              timeout=READ_TIMEOUT + size / SLOW_DISK)
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
        if upload.get("complete"):  # an earlier run got it there; only its answer was lost
            self.done = upload
        self.id, self.offset = upload.get("id"), upload.get("offset", 0)

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
        self.id = upload.get("id")
        if upload.get("complete"):  # an earlier run got it there; only its answer was lost
            self.done = upload
            return
        plan = backend._json("PUT", f"/uploads/{self.id}/index", data=self.index.pack(),
                             headers={"Content-Type": "application/octet-stream"})
        self.first = plan["done"]
        self.need = bytearray(len(self.index))
        for start, end in plan["need"]:
            self.need[start:end] = b"\x01" * (end - start)
        self.reused = plan["reused_bytes"]

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
