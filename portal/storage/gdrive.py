"""A cloud DP in a Google Drive account (Drive API v3), reached with Google OAuth 2 tokens.

Layout: `<folder>/<library>/...` in My Drive. Drive names may repeat inside one folder, so a path
is resolved by walking folder ids, always taking the oldest item of a name; the rescan reports the
others as problems and leaves them alone.

Hashes: Drive keeps custom metadata per file, so there is no manifest. Each upload sets
`appProperties` = {depot_sha256, depot_md5, depot_size} on the file. A rescan trusts the SHA-256
only while `depot_md5` and `depot_size` still equal the file's own `md5Checksum` and size (anyone
who changes the content through another app changes those, but not our properties). Drive's own
hash is MD5, reported as `hashes["md5"]`.

Uploads: Drive's resumable protocol. The session URI is saved (encrypted) in the copy's upload
state right after it is made, and the offset Drive confirmed at each checkpoint; a later run asks
Drive how far the session got (`Content-Range: bytes */size`) and goes on from there, or starts a
new session when Drive says it is gone (sessions last about a week). Chunks are multiples of
256 KiB except the last, sent in order; nothing breaking that rule is ever sent. Replacing a file
uploads a new revision of the same file id, so the old content stays in place until the new one is
complete (Drive keeps the old revision for 30 days, which counts against the quota).
Drive has no way to list open upload sessions: `sweep_uploads` does nothing, they expire by
themselves.

Download links for endpoints: Drive has no presigned URLs. Anything Google-side an endpoint could
use is either a bearer token (an access token under the drive.file scope still reads, changes and
deletes every file Depot made in that account for an hour and cannot be narrowed to one file) or
a change of the file's sharing ("anyone with the link", which lasts until someone removes it and
leaks the file to whoever sees the link). Neither is acceptable, so an endpoint gets a link to the
central server instead: `/cloud-links/v1/<dp id>/download?path=...&expires=...&sig=...`, signed
with an HMAC key derived from the server's SECRET_KEY for this DP, valid for `ttl_seconds`. The
central server checks it and streams the file from Drive with its own tokens (HTTP Range passed
through), so nothing the endpoint holds is a Google credential, and the link dies on time. The
cost: those bytes pass through the central server.
"""
import hashlib
from typing import BinaryIO, Iterator

from portal.core import signing
from portal.core.errors import DamagedInTransit, StorageRefused, StorageUnavailable
from portal.core.files import FileEntry
from portal.core.libraries import LIBRARIES, is_ignored_entry
from portal.core.names import escape_component, unescape_component
from portal.core.paths import library_parts
from portal.storage import answers
from portal.storage.base import Media, Source, Upload, UploadState, json_object
from portal.storage.kit import InOrderUpload, media_of, mtime_ns, response_stream
from portal.storage.oauth import PROVIDERS, OAuthStorage

FOLDER = "application/vnd.google-apps.folder"
GRANULE = 256 * 1024  # Drive's chunk unit: every chunk but the last is a multiple of it
PAGE_SIZE = 1000  # Drive's maximum; it may answer with fewer
FILE_FIELDS = "id,name,mimeType,size,md5Checksum,modifiedTime,appProperties,trashed"
RATE_LIMITS = {"userRateLimitExceeded", "rateLimitExceeded", "backendError",
               "sharingRateLimitExceeded"}


class GoogleDriveStorage(OAuthStorage):
    """A folder of a Google Drive account, through the Drive API v3."""

    provider = PROVIDERS["gdrive"]

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.base = self.config["DEPOT_GDRIVE_API_URL"].rstrip("/")
        self._folders: dict[str, str] = {}  # "" (the DP folder), "Images", "Images/x" -> id
        self._props: dict[str, dict] = {}  # path -> appProperties seen by the last walk

    # --- calls -----------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, expect=(200,), **kw):
        """An API call; Drive's 403s for rate limits are passing failures, others refusals."""
        response = self.request(method, self.base + path, expect=(*expect, 403), **kw)
        if response.status_code == 403 and 403 not in expect:
            message = self.error_message(response)
            if _reasons(response) & RATE_LIMITS:
                raise StorageUnavailable(f"Google Drive is throttling {self.name}: {message}")
            raise StorageRefused(f"Google Drive refused for {self.name}: {message}")
        return response

    def _json(self, method: str, path: str, **kw) -> dict:
        body = json_object(self._call(method, path, **kw))
        if body is None:
            raise StorageUnavailable(f"Google Drive answered {self.name} with something that is "
                                     "not JSON")
        return body

    def error_message(self, response) -> str:
        """Drive's `{"error": {"code", "message", "errors": [{"reason"}]}}`, with the reason."""
        message = super().error_message(response)
        reasons = sorted(_reasons(response))
        return f"{message} ({', '.join(reasons)})" if reasons else message

    # --- the account -----------------------------------------------------------------------

    def _about(self) -> dict:
        return self._json("GET", "/drive/v3/about", params={"fields": "user,storageQuota"})

    def account(self) -> dict:
        """The signed-in account: its permission id (stable) and its address."""
        user = self._about().get("user") or {}
        return {"id": user.get("permissionId"),
                "name": user.get("emailAddress") or user.get("displayName")}

    def check(self) -> None:
        """The account answers and the DP's folder is there."""
        self.account()
        if self._folder_id("", create=False) is None:
            raise StorageRefused(
                f"the folder {self.folder!r} is not in {self._who()}'s Google Drive (or Depot "
                "cannot see it: Depot only sees what it made itself); rescan after reconnecting, "
                "or create it by adding the DP again")

    def _who(self) -> str:
        return self.settings.get("account") or self.name

    def space(self) -> tuple[int | None, int | None]:
        """Free and total bytes from the account's quota (None, None when it has no limit)."""
        quota = self._about().get("storageQuota") or {}
        if quota.get("limit") is None:
            return None, None
        with answers.reading("Google Drive answered a quota"):
            limit = answers.whole(quota["limit"], "limit", digits=True)
            usage = answers.whole(quota.get("usage") or 0, "usage", digits=True)
        return max(0, limit - usage), limit

    def ensure_layout(self) -> None:
        """Create the DP folder and its six library folders where missing."""
        self.account()
        self._folder_id("", create=True)
        for library in LIBRARIES:
            self._folder_id(library, create=True)

    # --- folders and paths -----------------------------------------------------------------

    def _children(self, parent: str, name: str | None = None, folders: bool = False,
                  fields: str = FILE_FIELDS) -> Iterator[dict]:
        """The items in a folder (of a name, or only folders), oldest first, page by page."""
        query = [f"'{_quote(parent)}' in parents", "trashed = false"]
        if name is not None:
            query.append(f"name = '{_quote(name)}'")
        if folders:
            query.append(f"mimeType = '{FOLDER}'")
        params = {"q": " and ".join(query), "fields": f"nextPageToken,files({fields})",
                  "pageSize": PAGE_SIZE, "orderBy": "createdTime", "spaces": "drive"}
        while True:
            page = self._json("GET", "/drive/v3/files", params=params)
            yield from page.get("files") or []
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token

    def _folder_id(self, rel: str, create: bool) -> str | None:
        """The id of the DP folder ("") or a folder under it ("Images/x"), made where missing
        when `create`; the DP folder may itself be a path ("IT/Depot") under My Drive."""
        if rel in self._folders:
            return self._folders[rel]
        if rel == "":
            parent, names = "root", [n for n in self.folder.split("/") if n]
        else:
            head, _, last = rel.rpartition("/")
            parent, names = self._folder_id(head, create), [_drive_name(last)]
            if parent is None:
                return None
        for name in names:
            found = next(self._children(parent, name, folders=True, fields="id"), None)
            if found is None:
                if not create:
                    return None
                found = self._mkdir(parent, name)
            parent = found["id"]
        self._folders[rel] = parent
        return parent

    def _mkdir(self, parent: str, name: str) -> dict:
        """Make a folder; if another worker made one of that name meanwhile, the oldest wins and
        ours goes, so two copies never leave two folders of one name."""
        made = self._json("POST", "/drive/v3/files", params={"fields": "id"},
                          json={"name": name, "mimeType": FOLDER, "parents": [parent]})
        oldest = next(self._children(parent, name, folders=True, fields="id"), made)
        if oldest["id"] != made["id"]:
            self._call("DELETE", f"/drive/v3/files/{made['id']}", expect=(204, 404))
        return oldest

    def _item(self, path: str) -> dict | None:
        """The (oldest) item at an escaped path, file or folder, or None."""
        head, _, last = path.rpartition("/")
        parent = self._folder_id(head, create=False)
        if parent is None:
            return None
        return next(self._children(parent, _drive_name(last)), None)

    # --- listing ---------------------------------------------------------------------------

    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """Every file under the library folders with Drive's MD5 (no content is read)."""
        root = self._folder_id("", create=False)
        if root is None:
            raise StorageRefused(f"the folder {self.folder!r} is not in {self._who()}'s Google "
                                 "Drive")
        self._props = {}
        libraries = {}
        for item in self._children(root, folders=True, fields="id,name"):
            if item["name"] in LIBRARIES:
                if item["name"] in libraries:
                    problems.append(f"{self.folder}/{item['name']}: another folder of this name "
                                    "is in the DP folder; only the oldest is used")
                    continue
                libraries[item["name"]] = item["id"]
        for library in LIBRARIES:
            if library in libraries:
                self._folders[library] = libraries[library]
                yield from self._walk_folder(libraries[library], library, problems)

    def _walk_folder(self, folder_id: str, rel: str, problems: list[str]) -> Iterator[FileEntry]:
        seen: set[str] = set()
        subfolders = []
        top_level = "/" not in rel
        for item in self._children(folder_id):
            name = item.get("name") or ""
            if "/" in name:
                problems.append(f"{rel}/{escape_component(name.replace('/', '?').encode())}: "
                                "a name with '/' cannot be a path; skipped")
                continue
            escaped = escape_component(name.encode("utf-8", errors="surrogatepass"))
            if top_level and is_ignored_entry(escaped):
                continue
            path = f"{rel}/{escaped}"
            if escaped in seen:
                problems.append(f"{path}: more than one item of this name in Google Drive; only "
                                "the oldest is used")
                continue
            seen.add(escaped)
            if item.get("mimeType") == FOLDER:
                subfolders.append((item["id"], path))
            elif (item.get("mimeType") or "").startswith("application/vnd.google-apps."):
                problems.append(f"{path}: a Google Docs item has no file content; skipped")
            else:
                props = item.get("appProperties") or {}
                self._props[path] = props
                yield FileEntry(path, answers.size_of(item.get("size"), LISTING),
                                _modified(item),
                                handle=item["id"],
                                hashes={"md5": item["md5Checksum"]} if item.get("md5Checksum")
                                else {})
        for sub_id, path in subfolders:
            self._folders[path] = sub_id
            yield from self._walk_folder(sub_id, path, problems)

    def fill_hashes(self, entries: list[FileEntry]) -> None:
        """Our SHA-256 from each file's appProperties, where they still describe its content."""
        for entry in entries:
            props = self._props.get(entry.path)
            if props is None and entry.handle:
                item = self._metadata(entry.handle)
                if item is None:
                    continue
                props = item.get("appProperties") or {}
                if item.get("md5Checksum"):
                    entry.hashes = {"md5": item["md5Checksum"]}
            md5 = entry.hashes.get("md5")
            if props and md5 and props.get("depot_md5") == md5 \
                    and props.get("depot_size") == str(entry.size) and props.get("depot_sha256"):
                entry.sha256 = props["depot_sha256"]

    def _metadata(self, file_id: str) -> dict | None:
        response = self._call("GET", f"/drive/v3/files/{file_id}", expect=(200, 404),
                              params={"fields": FILE_FIELDS})
        if response.status_code == 404:
            return None
        item = response.json()
        return None if item.get("trashed") else item

    # --- reading ---------------------------------------------------------------------------

    def _file_id(self, entry: FileEntry) -> str:
        if entry.handle:
            return entry.handle
        item = self._item(entry.path)
        if item is None or item.get("mimeType") == FOLDER:
            raise FileNotFoundError(entry.path)
        return item["id"]

    def media(self, file_id: str, range_header: str | None = None):
        """The streamed answer to a download of a file's content (200, or 206 for a Range)."""
        headers = {"Accept-Encoding": "identity"}
        if range_header:
            headers["Range"] = range_header
        return self._call("GET", f"/drive/v3/files/{file_id}", expect=(200, 206, 404, 416),
                          params={"alt": "media"}, headers=headers, stream=True)

    def open_media(self, path: str, range_header: str | None = None) -> Media:
        """The file's bytes (200, 206 or 416, as Drive answers the Range) for the central
        server's link relay; FileNotFoundError when it is not there."""
        response = self.media(self._file_id(FileEntry(path, 0, 0)), range_header)
        if response.status_code == 404:
            response.close()
            raise FileNotFoundError(path)
        return media_of(response)

    def open_read(self, entry: FileEntry) -> BinaryIO:
        """The file's content as a stream (FileNotFoundError when Drive no longer has it)."""
        response = self.media(self._file_id(entry))
        if response.status_code != 200:
            response.close()
            raise FileNotFoundError(entry.path)
        return response_stream(response, "Google Drive")

    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        try:
            item = self._metadata(self._file_id(entry))
        except FileNotFoundError:
            return None
        if item is None:
            return None
        return answers.size_of(item.get("size"), LISTING), _modified(item)

    # --- writing ---------------------------------------------------------------------------

    def chunk_size(self) -> int:
        """DEPOT_GDRIVE_CHUNK, refused unless Drive would take it."""
        chunk = self.config["DEPOT_GDRIVE_CHUNK"]
        if not isinstance(chunk, int) or chunk <= 0 or chunk % GRANULE:
            raise StorageRefused(f"DEPOT_GDRIVE_CHUNK must be a multiple of 256 KiB (262144 "
                                 f"bytes); it is {chunk}")
        return chunk

    def upload(self, source: Source, state: UploadState) -> Upload:
        """Resume the saved Drive session of this version of the file, or start one."""
        chunk = self.chunk_size()  # before anything reaches Drive
        return _DriveUpload(self, source, state, chunk)

    def delete(self, path: str) -> None:
        """Delete a file or folder (with everything under it) at a path; every item of that name
        goes, so no older duplicate takes its place. Absent is fine."""
        library_parts(path)
        head, _, last = path.rpartition("/")
        parent = self._folder_id(head, create=False)
        if parent is None:
            return
        for item in list(self._children(parent, _drive_name(last), fields="id,mimeType")):
            self._call("DELETE", f"/drive/v3/files/{item['id']}", expect=(204, 200, 404))
            if item.get("mimeType") == FOLDER:
                self._folders = {k: v for k, v in self._folders.items()
                                 if k != path and not k.startswith(path + "/")}

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """A link to the central server's Drive relay for this file, signed and short-lived (see
        the module's docstring for why not a Google URL)."""
        if self._dp_id is None:
            raise StorageRefused("a download link needs a saved DP")
        return self.env.signed_link(signing.CLOUD_RELAY, path, ttl_seconds, "Google Drive",
                                    scope=self._dp_id)


class _DriveUpload(InOrderUpload):
    """One Drive resumable upload session: chunks in order, each a multiple of 256 KiB but the
    last; Drive says after each how much it kept (308 + Range), which may be less than sent."""

    def __init__(self, backend: GoogleDriveStorage, source: Source, state: UploadState,
                 chunk: int):
        self.backend, self.source, self.state = backend, source, state
        self.size, self.chunk_size = source.size, chunk
        self.file: dict | None = None  # Drive's file resource once the upload is complete
        self.md5 = None if source.hashes.get("md5") else hashlib.md5()
        self.hashed = 0  # bytes of the content the running MD5 has seen
        if state.stale:
            self._cancel(state.stale.get("url"))
            state.clear()
        saved = state.data
        if saved and saved.get("url"):
            offset = self._status(saved["url"])
            if offset is not None:
                self.url, self.offset, self.saved_offset = saved["url"], offset, offset
                if self.md5 is not None:  # what Drive kept, hashed from central's copy
                    self.catch_up(self.md5, offset)
                    self.hashed = offset
                return
        self.url, self.offset, self.saved_offset = None, 0, 0
        existing = self._existing()
        if self.done is not None:
            return
        self._start(existing)

    # --- starting ---------------------------------------------------------------------------

    def _existing(self) -> dict | None:
        """The file already at the path; sets `done` when it is this very version."""
        backend, path = self.backend, self.source.path
        head, _, last = path.rpartition("/")
        self.parent = backend._folder_id(head, create=True)
        self.name = _drive_name(last)
        existing = next((item for item in backend._children(self.parent, self.name)
                         if item.get("mimeType") != FOLDER), None)
        if existing is not None:
            props = existing.get("appProperties") or {}
            md5 = existing.get("md5Checksum")
            if (int(existing.get("size") or 0) == self.size and md5
                    and props.get("depot_sha256") == self.source.sha256
                    and props.get("depot_md5") == md5 and props.get("depot_size") == str(self.size)
                    and self.source.hashes.get("md5", md5) == md5):
                self.done = self._result(existing)
        return existing

    def _start(self, existing: dict | None) -> None:
        """A new session: a new file in its folder, or a new revision of the file there."""
        backend = self.backend
        props = {"depot_sha256": self.source.sha256, "depot_size": str(self.size),
                 "depot_md5": self.source.hashes.get("md5")}  # None: set once Drive computed it
        params = {"uploadType": "resumable", "fields": FILE_FIELDS}
        headers = {"X-Upload-Content-Type": "application/octet-stream",
                   "X-Upload-Content-Length": str(self.size)}
        if existing is None:
            response = backend._call(
                "POST", "/upload/drive/v3/files", params=params, headers=headers,
                json={"name": self.name, "parents": [self.parent],
                      "appProperties": {k: v for k, v in props.items() if v is not None}})
        else:
            response = backend._call("PATCH", f"/upload/drive/v3/files/{existing['id']}",
                                     params=params, headers=headers,
                                     json={"appProperties": props})
        url = response.headers.get("Location")
        if not url:
            raise StorageUnavailable(f"Google Drive gave {backend.name} no upload session")
        self.url, self.offset = url, 0
        self.save()  # at once: a crash from here on leaves it resumable

    def _status(self, url: str) -> int | None:
        """How much of the session Drive kept; None when the session is gone (start over)."""
        response = self.backend.request(
            "PUT", url, expect=(200, 201, 308, 404, 410), data=b"",
            headers={"Content-Range": f"bytes */{self.size}"})
        if response.status_code in (404, 410):
            self.state.clear()
            return None
        if response.status_code in (200, 201):
            self.file = response.json()
            return self.size
        return _kept(response)

    def save(self) -> None:
        """The session URI and how far Drive confirmed it, in the copy's UploadState."""
        self.state.save({"url": self.url, "chunk": self.chunk_size, "offset": self.offset})
        self.saved_offset = self.offset

    # --- the interface ----------------------------------------------------------------------

    def send(self, offset: int, data: bytes) -> None:
        """PUT one chunk at the offset Drive expects; if Drive kept less of it, send the rest."""
        end = offset + len(data)
        if end < self.size and len(data) % GRANULE:
            raise StorageRefused(f"a chunk of {len(data)} bytes is not a multiple of 256 KiB; "
                                 "Google Drive would refuse it (DEPOT_GDRIVE_CHUNK must be a "
                                 "multiple of 262144)")
        if offset != self.offset or end > self.size or not data:
            raise StorageRefused(f"chunk at {offset} is out of order (Google Drive expects "
                                 f"{self.offset})")
        if self.md5 is not None and offset <= self.hashed < end:
            self.md5.update(memoryview(data)[self.hashed - offset:])
            self.hashed = end
        for _ in range(4):
            response = self.backend.request(
                "PUT", self.url, expect=(200, 201, 308, 404, 410), data=data,
                headers={"Content-Range": f"bytes {offset}-{end - 1}/{self.size}"})
            if response.status_code in (404, 410):
                raise StorageUnavailable(f"Google Drive forgot the upload session of "
                                         f"{self.source.path}; it starts again")
            if response.status_code in (200, 201):
                self.file, self.offset = response.json(), self.size
                return
            kept = _kept(response)
            self.offset = kept
            if kept >= end:
                return
            if kept < offset:
                raise StorageUnavailable(f"Google Drive lost part of {self.source.path}'s upload")
            data, offset = data[kept - offset:], kept  # Drive kept part of it: the rest again
        raise StorageUnavailable(f"Google Drive keeps taking only part of {self.source.path}")

    def finish(self) -> dict:
        """Complete the session, then check size and MD5 (central's, else ours); a damaged
        file is deleted. Our SHA-256 is then on the file's appProperties."""
        if self.file is None:
            offset = self._status(self.url)
            if self.file is None:
                raise StorageUnavailable(f"Google Drive has {offset or 0} of {self.size} bytes "
                                         f"of {self.source.path}; the upload goes on")
        file = self.file
        expected = self.source.hashes.get("md5") or (self.md5.hexdigest() if self.md5 else None)
        size = int(file.get("size") or 0)
        if size != self.size or file.get("md5Checksum") != expected:
            self.backend._call("DELETE", f"/drive/v3/files/{file['id']}", expect=(204, 200, 404))
            raise DamagedInTransit(f"{self.source.path} arrived damaged at Google Drive (size "
                                   f"{size} of {self.size}, MD5 {file.get('md5Checksum')} not "
                                   f"{expected}); it was deleted there")
        props = file.get("appProperties") or {}
        if props.get("depot_md5") != expected:  # central gave no MD5: record the one we checked
            file = self.backend._json(
                "PATCH", f"/drive/v3/files/{file['id']}", params={"fields": FILE_FIELDS},
                json={"appProperties": {"depot_sha256": self.source.sha256,
                                        "depot_size": str(self.size), "depot_md5": expected}})
        return self._result(file)

    def _result(self, file: dict) -> dict:
        return {"size": int(file.get("size") or 0), "mtime_ns": _modified(file),
                "sha256": self.source.sha256, "hashes": {"md5": file.get("md5Checksum")}}

    def abort(self) -> None:
        """Cancel the session (Drive answers 499); absent is fine."""
        self._cancel(self.url)

    def _cancel(self, url: str | None) -> None:
        if url:
            self.backend.request("DELETE", url, expect=(499, 200, 204, 404, 410))


def _kept(response) -> int:
    """Bytes Drive kept, from a 308's `Range: bytes=0-N` (no Range: none yet)."""
    header = response.headers.get("Range") or ""
    if not header.startswith("bytes=0-"):
        return 0
    try:
        return int(header[len("bytes=0-"):]) + 1
    except ValueError:
        raise StorageUnavailable("Google Drive answered an upload with an unreadable Range") \
            from None


def _reasons(response) -> set[str]:
    try:
        errors = response.json()["error"]["errors"]
        return {e["reason"] for e in errors if isinstance(e, dict) and e.get("reason")}
    except (ValueError, KeyError, TypeError):
        return set()


def _quote(value: str) -> str:
    """A string inside single quotes in a Drive query."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _drive_name(component: str) -> str:
    """The Drive name of an escaped path component (Drive names are Unicode text)."""
    try:
        return unescape_component(component).decode("utf-8")
    except UnicodeDecodeError:
        raise StorageRefused(f"{component!r} is not valid UTF-8: Google Drive cannot hold this "
                             "name") from None


LISTING = "Google Drive answered a listing"


def _modified(item: dict) -> int:
    """A file's modifiedTime in nanoseconds (0 when it has none)."""
    return mtime_ns(item.get("modifiedTime")) or 0


__all__ = ["GoogleDriveStorage"]
