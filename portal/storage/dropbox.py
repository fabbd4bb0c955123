"""A cloud DP in a Dropbox account (API v2), reached with OAuth tokens.

Paths: a DP is a folder of the account (`settings["folder"]`, "Depot" by default) holding the six
library folders. Dropbox keeps no custom metadata cheaply (file properties need templates), so
what Depot knows about a file it wrote (size, SHA-256, Dropbox `content_hash`) is a small JSON
record per file in `<folder>/.depot/manifest/<path>.json`: one record a file, so copies of
different files never race on one manifest. A record counts only while its content_hash and
size are those of the file now.

Uploads use Dropbox upload sessions: start, append_v2 in order, finish. Dropbox takes at most
150 MiB of data a request (DEPOT_DROPBOX_CHUNK, 48 MiB by default, is checked before anything is
sent). The session id and offset are kept in the copy's UploadState; a copy that starts again
asks Dropbox how far the session got (an empty append at the saved offset answers
`incorrect_offset` with the `correct_offset`) and sends only the rest. A session Dropbox no
longer knows (they last 7 days) means starting again. Dropbox has no call to cancel or list
upload sessions: `abort` forgets it and `sweep_uploads` has nothing to do (they expire by
themselves).
"""
import json
from typing import BinaryIO, Iterator

import requests

from portal.core.errors import DamagedInTransit, StorageRefused, StorageUnavailable
from portal.core.files import FileEntry
from portal.core.hashes import DropboxContentHash
from portal.core.libraries import LIBRARIES, is_ignored_entry
from portal.core.names import escape_component, unescape_component
from portal.core.paths import library_parts
from portal.storage import answers
from portal.storage.base import Source, Upload, UploadState
from portal.storage.kit import MANIFEST, InOrderUpload, ManifestRecords, mtime_ns, response_stream
from portal.storage.oauth import PROVIDERS, READ_TIMEOUT, OAuthStorage

MiB = 1024 * 1024
MAX_REQUEST = 150 * MiB  # Dropbox: "The request payload must be at most 150 MB"
PAGE_SIZE = 2000  # list_folder's largest `limit`
KIND = "dropbox"  # the hash kind key (central's provider hashes, FileEntry.hashes)


class DropboxConflict(StorageRefused):
    """A 409 from Dropbox: the call's own error, with its `error_summary` and `error` union."""

    def __init__(self, message: str, summary: str, error: dict):
        super().__init__(message)
        self.summary, self.error = summary, error

    def means(self, *prefixes: str) -> bool:
        return any(self.summary.startswith(p) for p in prefixes)


def _arg_header(arg: dict) -> str:
    """JSON for the Dropbox-API-Arg header: ASCII only, with DEL escaped too (Dropbox's rule)."""
    return json.dumps(arg, ensure_ascii=True).replace("\x7f", "\\u007f")


LISTING = "Dropbox answered a listing"


def _modified(metadata: dict) -> int | None:
    """A file's server_modified (else client_modified) in nanoseconds, None when unreadable."""
    return mtime_ns(metadata.get("server_modified") or metadata.get("client_modified"))


def _name(part: str, path: str) -> str:
    """A Dropbox file or folder name for one escaped path component; refused when Dropbox cannot
    hold it (not UTF-8, control characters, backslashes)."""
    try:
        name = unescape_component(part).decode("utf-8")
    except UnicodeDecodeError:
        raise StorageRefused(f"{path}: Dropbox cannot hold names that are not UTF-8") from None
    if name in ("", ".", "..") or any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7f
                                      for ch in name):
        raise StorageRefused(f"{path}: Dropbox cannot hold this name (empty, '.', '..', "
                             "backslashes or control characters)")
    return name


class DropboxStorage(ManifestRecords, OAuthStorage):
    """Dropbox API v2 as a storage backend; see the module's docstring."""

    provider = PROVIDERS["dropbox"]
    hash_kind = KIND

    # --- calls -----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.config["DEPOT_DROPBOX_API_URL"].rstrip("/")

    @property
    def content_url(self) -> str:
        return self.config["DEPOT_DROPBOX_CONTENT_URL"].rstrip("/")

    def error_message(self, response: requests.Response) -> str:
        """Dropbox's `error_summary` ("path/not_found/..."), or its plain-text 400 answers."""
        try:
            body = response.json()
        except ValueError:
            text = (response.text or "").strip()
            return text[:300] if text else f"HTTP {response.status_code}"
        if isinstance(body, dict) and body.get("error_summary"):
            summary = str(body["error_summary"]).rstrip("./")
            if "insufficient_space" in summary:
                return f"the Dropbox account is full ({summary})"
            return summary[:300]
        return super().error_message(response)

    def _check_conflict(self, response: requests.Response, what: str) -> None:
        if response.status_code == 409:
            try:
                body = response.json()
            except ValueError:
                body = {}
            summary = str(body.get("error_summary") or "")
            raise DropboxConflict(f"Dropbox refused {what} for {self.name}: "
                                  f"{self.error_message(response)}", summary,
                                  body.get("error") or {})

    def rpc(self, endpoint: str, args: dict | None = None, *, what: str | None = None) -> dict:
        """An RPC call (JSON in, JSON out); a 409 raises DropboxConflict."""
        kw = {"json": args} if args is not None else {}
        response = self.request("POST", f"{self.api_url}/{endpoint}", expect=(200, 409), **kw)
        self._check_conflict(response, what or endpoint)
        try:
            return response.json()
        except ValueError:
            raise StorageRefused(f"Dropbox answered {endpoint} for {self.name} without "
                                 "JSON") from None

    def content(self, endpoint: str, arg: dict, data: bytes = b"", *, what: str | None = None,
                stream: bool = False, timeout: float = READ_TIMEOUT,
                headers: dict | None = None) -> requests.Response:
        """A content call: the argument in the Dropbox-API-Arg header, the body raw bytes."""
        response = self.request(
            "POST", f"{self.content_url}/{endpoint}", expect=(200, 206, 409), data=data,
            stream=stream, timeout=timeout,
            headers={"Dropbox-API-Arg": _arg_header(arg),
                     "Content-Type": "application/octet-stream", **(headers or {})})
        if response.status_code == 409:
            response.content  # noqa: B018 - read the small error body, then let go of it
            response.close()
        self._check_conflict(response, what or endpoint)
        return response

    @staticmethod
    def _result(response: requests.Response) -> dict:
        try:
            return response.json()
        finally:
            response.close()

    # --- paths -----------------------------------------------------------------------------

    @property
    def root(self) -> str:
        """The DP's folder as a Dropbox path ("/Depot")."""
        return "/" + self.folder.strip("/")

    def dbx_path(self, path: str) -> str:
        """The Dropbox path of an escaped DP path like `Images/Win11.wim`."""
        library_parts(path, inside=False)
        return "/".join([self.root, *(_name(part, path) for part in path.split("/"))])

    def manifest_path(self, path: str, suffix: str = ".json") -> str:
        library_parts(path)
        return "/".join([self.root, MANIFEST, *(_name(p, path) for p in path.split("/"))]) + suffix

    def metadata(self, dbx_path: str) -> dict | None:
        """A file's or folder's metadata, None when there is nothing at that path."""
        try:
            return self.rpc("files/get_metadata", {"path": dbx_path}, what="a lookup")
        except DropboxConflict as exc:
            if exc.means("path/not_found"):
                return None
            raise

    # --- the storage interface -------------------------------------------------------------

    def account(self) -> dict:
        """The signed-in account: its account_id and email (or display name)."""
        body = self.rpc("users/get_current_account", what="the account lookup")
        name = body.get("email") or (body.get("name") or {}).get("display_name") or "?"
        return {"id": body["account_id"], "name": name}

    def check(self) -> None:
        """The account answers, is the one this DP was connected to, and holds the folder."""
        account = self.account()
        expected = self.settings.get("account_id")
        if expected and account["id"] != expected:
            raise StorageRefused(f"{self.name} is now connected to another Dropbox account "
                                 f"({account['name']}): reconnect it with "
                                 f"{self.settings.get('account') or 'the account it had'}")
        found = self.metadata(self.root)
        if found is None:
            raise StorageRefused(f"the folder {self.root} is not in {account['name']}'s Dropbox "
                                 f"any more: create it or reconnect {self.name}")
        if found.get(".tag") != "folder":
            raise StorageRefused(f"{self.root} in {account['name']}'s Dropbox is a file, not a "
                                 "folder")

    def ensure_layout(self) -> None:
        """Create the folder and its six library folders where missing (parents come along)."""
        for library in LIBRARIES:
            try:
                self.rpc("files/create_folder_v2", {"path": f"{self.root}/{library}",
                                                    "autorename": False},
                         what=f"creating {self.root}/{library}")
            except DropboxConflict as exc:
                if not exc.means("path/conflict/folder"):
                    raise

    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """Every file under the six library folders, page by page, with its content_hash;
        top-level hidden and temp entries are skipped like at central."""
        root_lower = self.root.lower()
        for library in LIBRARIES:
            prefix = f"{root_lower}/{library.lower()}/"
            try:
                page = self.rpc("files/list_folder", {
                    "path": f"{self.root}/{library}", "recursive": True, "limit": PAGE_SIZE},
                    what=f"listing {library}")
            except DropboxConflict as exc:
                if exc.means("path/not_found"):
                    continue  # a library nobody created yet holds nothing
                raise
            while True:
                self.check_cancelled()
                for item in page.get("entries", []):
                    entry = self._entry(item, library, prefix, problems)
                    if entry is not None:
                        yield entry
                if not page.get("has_more"):
                    break
                page = self.rpc("files/list_folder/continue", {"cursor": page["cursor"]},
                                what=f"listing {library}")

    def _entry(self, item: dict, library: str, prefix: str,
               problems: list[str]) -> FileEntry | None:
        if item.get(".tag") != "file":
            return None  # folders (the listed one too) and deleted entries
        lower, display = item.get("path_lower", ""), item.get("path_display", "")
        if not lower.startswith(prefix):
            return None
        # path_display keeps the case the file was created with; cut at the same place as the
        # lower-case path (the library folder's case may differ from ours)
        parts = display.split("/")[len(prefix.rstrip("/").split("/")):]
        if not parts or is_ignored_entry(escape_component(parts[0].encode("utf-8"))):
            return None
        path = "/".join([library, *(escape_component(p.encode("utf-8")) for p in parts)])
        modified = _modified(item)
        if modified is None:
            problems.append(f"{path}: Dropbox gave no readable modification time, skipped")
            return None
        hashes = {KIND: item["content_hash"]} if item.get("content_hash") else {}
        return FileEntry(path, answers.size_of(item.get("size"), LISTING), modified,
                         handle=item.get("id"),
                         hashes=hashes)

    def read_record(self, path: str) -> dict | None:
        """The manifest record of one file, None when there is none (or it is not readable)."""
        try:
            response = self.content("files/download", {"path": self.manifest_path(path)},
                                    what="reading a manifest record")
        except DropboxConflict as exc:
            if exc.means("path/not_found"):
                return None
            raise
        try:
            record = json.loads(response.content)
        except ValueError:
            return None
        finally:
            response.close()
        return record if isinstance(record, dict) else None

    def write_record(self, path: str, record: dict) -> None:
        """Write a file's manifest record (a simple upload: records are small)."""
        self._result(self.content("files/upload", {
            "path": self.manifest_path(path), "mode": "overwrite", "autorename": False,
            "mute": True}, json.dumps(record, sort_keys=True).encode(),
            what="writing a manifest record"))

    def open_read(self, entry: FileEntry) -> BinaryIO:
        """The file's content as a stream (by its Dropbox id when the walk gave one)."""
        target = entry.handle or self.dbx_path(entry.path)
        try:
            response = self.content("files/download", {"path": target}, stream=True,
                                    what=f"reading {entry.path}")
        except DropboxConflict as exc:
            if exc.means("path/not_found"):
                raise FileNotFoundError(entry.path) from None
            raise
        return response_stream(response, "Dropbox")

    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        found = self.metadata(entry.handle or self.dbx_path(entry.path))
        if found is None or found.get(".tag") != "file":
            return None
        return answers.size_of(found["size"], LISTING), _modified(found) or 0

    def space(self) -> tuple[int | None, int | None]:
        """(free, total) of the account (a team's shared allocation where it has one)."""
        usage = self.rpc("users/get_space_usage", what="the space lookup")
        allocation = usage.get("allocation") if isinstance(usage.get("allocation"), dict) else {}
        with answers.reading("Dropbox answered a space usage"):
            used = answers.optional_whole(usage.get("used"), "used")
            total = answers.optional_whole(allocation.get("allocated"), "allocated")
        if used is None or total is None:
            return None, total
        return max(0, total - used), total

    def delete(self, path: str) -> None:
        """Delete a file or an asset folder, and its manifest records; absent is fine."""
        for target in (self.dbx_path(path), self.manifest_path(path),
                       self.manifest_path(path, suffix="")):
            try:
                self.rpc("files/delete_v2", {"path": target}, what=f"deleting {path}")
            except DropboxConflict as exc:
                if not exc.means("path_lookup/not_found", "path/not_found"):
                    raise

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """A Dropbox temporary link: it works for four hours (Dropbox's fixed lifetime, which
        cannot be shortened, so `ttl_seconds` only matters up to that) and carries no token."""
        try:
            return self.rpc("files/get_temporary_link", {"path": self.dbx_path(path)},
                            what=f"a download link for {path}")["link"]
        except DropboxConflict as exc:
            if exc.means("path/not_found"):
                raise StorageRefused(f"{path} is not at {self.name}") from None
            raise

    # --- uploads ---------------------------------------------------------------------------

    def chunk_size(self) -> int:
        """DEPOT_DROPBOX_CHUNK, checked against Dropbox's limit before anything is sent."""
        chunk = self.config.get("DEPOT_DROPBOX_CHUNK")
        if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 < chunk <= MAX_REQUEST:
            raise StorageRefused(f"DEPOT_DROPBOX_CHUNK must be between 1 byte and 150 MiB "
                                 f"({MAX_REQUEST} bytes: Dropbox takes at most that much a "
                                 f"request); it is {chunk!r}")
        return chunk

    def upload(self, source: Source, state: UploadState) -> Upload:
        """Resume the saved upload session, or start one (see the module's docstring)."""
        return _DropboxUpload(self, source, state, self.chunk_size())


class _DropboxUpload(InOrderUpload):
    """One file's upload session: pieces in order (`parallel` 1), at most 150 MiB each."""

    def __init__(self, backend: DropboxStorage, source: Source, state: UploadState, chunk: int):
        self.backend, self.source, self.state = backend, source, state
        self.chunk_size, self.size = chunk, source.size
        self.target = backend.dbx_path(source.path)
        self.session_id: str | None = None
        self.offset = self.saved_offset = 0
        self.done = self._already_there()
        if self.done is not None:
            return
        saved = state.data or {}
        if saved.get("session_id"):
            self.offset = self._probe(saved["session_id"], int(saved.get("offset", 0)))
            if self.offset is not None:
                self.session_id = saved["session_id"]
                if self.offset != saved.get("offset"):
                    self.save()
        if self.session_id is None:
            started = self.backend._result(self.backend.content(
                "files/upload_session/start", {"close": False}, what="starting an upload"))
            self.session_id, self.offset = started["session_id"], 0
            self.save()
        self.hasher = None
        if KIND not in source.hashes:  # central gave no content_hash: compute it while sending
            self.hasher = DropboxContentHash()
            self.catch_up(self.hasher, self.offset)  # what an earlier run sent

    def __repr__(self) -> str:
        return f"<_DropboxUpload {self.source.path!r} at {self.offset}>"  # not the session id

    def _result(self, size: int, mtime_ns: int, content_hash: str) -> dict:
        return {"size": size, "mtime_ns": mtime_ns, "sha256": self.source.sha256,
                "hashes": {KIND: content_hash}}

    def _already_there(self) -> dict | None:
        """This version is at Dropbox already (an earlier run finished; its answer was lost)."""
        found = self.backend.metadata(self.target)
        if found is None or found.get(".tag") != "file" or found.get("size") != self.source.size:
            return None
        content_hash = found.get("content_hash")
        if self.backend.recorded_sha256(self.source.path, self.size, content_hash) \
                != self.source.sha256:
            if not content_hash or self.source.hashes.get(KIND) != content_hash:
                return None
            self.backend.record(self.source.path, self.size, self.source.sha256, content_hash)
        return self._result(found["size"], _modified(found) or 0, content_hash)

    def _probe(self, session_id: str, offset: int) -> int | None:
        """How far the session got: an empty append at the saved offset is either right or
        answered with the correct offset; None when Dropbox no longer knows the session."""
        try:
            self.backend._result(self.backend.content("files/upload_session/append_v2", {
                "cursor": {"session_id": session_id, "offset": offset}, "close": False},
                what="resuming an upload"))
            return offset
        except DropboxConflict as exc:
            if exc.means("incorrect_offset"):
                return int(exc.error["correct_offset"])
            if exc.means("not_found", "closed"):
                return None
            raise

    def save(self) -> None:
        """The session id and how far it got, in the copy's UploadState."""
        self.state.save({"session_id": self.session_id, "offset": self.offset,
                         "chunk": self.chunk_size})
        self.saved_offset = self.offset

    def send(self, offset: int, data: bytes) -> None:
        """Append one piece at the session's offset (checked here before it goes out)."""
        if len(data) > MAX_REQUEST:
            raise StorageRefused(f"a piece of {len(data)} bytes is more than Dropbox takes in "
                                 f"one request ({MAX_REQUEST} bytes): lower DEPOT_DROPBOX_CHUNK")
        if offset != self.offset:
            raise StorageRefused(f"Dropbox takes an upload in order: a piece at {offset} came "
                                 f"while the session is at {self.offset}")
        try:
            self.backend._result(self.backend.content("files/upload_session/append_v2", {
                "cursor": {"session_id": self.session_id, "offset": offset}, "close": False},
                data, what=f"sending {self.source.path}"))
        except DropboxConflict as exc:
            if exc.means("incorrect_offset") and \
                    int(exc.error.get("correct_offset", -1)) == offset + len(data):
                pass  # an earlier try of this very piece got there; only its answer was lost
            elif exc.means("incorrect_offset", "not_found"):
                raise StorageUnavailable(f"the upload session of {self.source.path} at "
                                         f"{self.backend.name} is not where this copy was "
                                         f"({exc.summary.split('/')[0]}): resuming") from None
            else:
                raise
        if self.hasher is not None:
            self.hasher.update(data)
        self.offset += len(data)

    def finish(self) -> dict:
        """Commit the session to the file's path, then compare size and content_hash."""
        if self.offset != self.source.size:
            raise StorageUnavailable(f"{self.source.path}: the upload is at {self.offset} of "
                                     f"{self.source.size} bytes")
        expected = self.source.hashes.get(KIND) or self.hasher.hexdigest()
        try:
            found = self.backend._result(self.backend.content("files/upload_session/finish", {
                "cursor": {"session_id": self.session_id, "offset": self.offset},
                "commit": {"path": self.target, "mode": "overwrite", "autorename": False,
                           "mute": True, "strict_conflict": False}},
                what=f"finishing {self.source.path}",
                timeout=READ_TIMEOUT + self.source.size / (50 * MiB)))
        except DropboxConflict as exc:
            if exc.means("lookup_failed"):  # the session moved on or is gone: the next try
                raise StorageUnavailable(f"the upload session of {self.source.path} at "  # resumes
                                         f"{self.backend.name} was not found at its end: "
                                         "resuming") from None
            raise
        size, content_hash = found.get("size"), found.get("content_hash")
        if size != self.source.size or content_hash != expected:
            self._discard()
            raise DamagedInTransit(
                f"{self.source.path} arrived damaged at {self.backend.name}: Dropbox has "
                f"{size} bytes with content_hash {content_hash}, expected {self.source.size} "
                f"bytes with {expected}")
        self.backend.record(self.source.path, size, self.source.sha256, content_hash)
        return self._result(size, _modified(found) or 0, content_hash)

    def _discard(self) -> None:
        try:
            self.backend.delete(self.source.path)
        except StorageRefused:
            pass  # the next copy overwrites it; a rescan finds it does not match

    def abort(self) -> None:
        """Forget the session: Dropbox has no call to cancel one; it expires after 7 days."""
        self.session_id = None
