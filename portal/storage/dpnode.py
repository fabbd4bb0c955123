"""A local DP: a Depot DP node at a branch, reached over HTTP(S) with its key."""
import json
from typing import BinaryIO, Iterator

import requests

from portal.dpnode import signing
from portal.services import DepotError
from portal.services.jobs import JobCancelled
from portal.storage.base import FileEntry, StorageBackend

CONNECT_TIMEOUT = 5
READ_TIMEOUT = 120  # a finish hashes the whole file on the node before it answers


class NodeUnreachable(DepotError):
    """The node did not answer (down, or the network between): worth trying again later."""

    code, status = "dp_unreachable", 502


class NodeError(DepotError):
    """The node answered with an error; `node_code` and `node_status` say which. A refused key is
    the caller's input (400); a full disk stays 507; anything else is the node's trouble (502)."""

    code, status = "dp_error", 502

    def __init__(self, message: str, node_code: str, node_status: int):
        status = 400 if node_status in (401, 403) else 507 if node_status == 507 else None
        super().__init__(message, status=status)
        self.node_code, self.node_status = node_code, node_status


class DpNodeStorage(StorageBackend):
    """The DP node API (`portal.dpnode`) as a storage backend."""

    hashes_itself = True

    def __init__(self, dp=None, *, url: str | None = None, key: str | None = None,
                 name: str | None = None):
        super().__init__(dp)
        if dp is not None:
            from portal.services import secrets

            url, key, name = dp.url, secrets.decrypt(dp.secret), dp.name
        self.url, self.key, self.name = url.rstrip("/"), key, name or "the DP node"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def _call(self, method: str, path: str, *, stream: bool = False, timeout: float = READ_TIMEOUT,
              **kw) -> requests.Response:
        try:
            response = self.http.request(method, f"{self.url}/dp/v1{path}", stream=stream,
                                         timeout=(CONNECT_TIMEOUT, timeout),
                                         allow_redirects=False, **kw)
        except requests.RequestException as exc:
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

    # --- the storage interface -------------------------------------------------------------

    def _json(self, method: str, path: str, **kw) -> dict:
        """A call whose answer must be a JSON object (anything else is not a DP node talking)."""
        response = self._call(method, path, **kw)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
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
                if self.cancelled is not None and self.cancelled.is_set():
                    raise JobCancelled()
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

    def open_read(self, entry: FileEntry) -> BinaryIO:
        raise DepotError(f"{self.name} hashes its own files; nothing is read from it here")

    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        raise DepotError(f"{self.name} hashes its own files; nothing is read from it here")

    def space(self) -> tuple[int | None, int | None]:
        if getattr(self, "_space", None) is None:
            health = self.check()
            self._space = (health["free_bytes"], health["total_bytes"])
        return self._space

    # --- uploads (copies) ------------------------------------------------------------------

    def start_upload(self, path: str, size: int, sha256: str) -> dict:
        """Create the upload, or find the one under way: {id, offset, received, ...}."""
        return self._json("POST", "/uploads", json={"path": path, "size": size, "sha256": sha256})

    def send_chunk(self, upload_id: str, offset: int, data: bytes) -> dict:
        return self._json("PATCH", f"/uploads/{upload_id}", data=data,
                          headers={"Upload-Offset": str(offset)})

    def finish_upload(self, upload_id: str, size: int) -> dict:
        """Have the node check and place the file; it hashes it all first, so the wait allows for
        a slow disk (25 MiB/s). A timeout is harmless: asked again, the node says it is done."""
        return self._json("POST", f"/uploads/{upload_id}/finish",
                          timeout=READ_TIMEOUT + size / (25 * 1024 * 1024))

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
        return signing.sign(self.url, self.key, path, ttl_seconds)
