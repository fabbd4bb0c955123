"""A cloud DP in a OneDrive account: Microsoft Graph v1.0 with the user's delegated OAuth tokens.

Files live under `<folder>/<library>/...` in the account's drive. Graph keeps no custom metadata on
files that Depot could use, so the SHA-256 of what Depot wrote is kept in a JSON record per file,
`<folder>/.depot/manifest/<path>.json` = {"size", "sha256", "quickxor"}, written after each upload;
a record counts only while the file's QuickXorHash and size still match it. Files nobody recorded
are reported with OneDrive's own QuickXorHash, which a rescan compares with central's.

Uploads use Graph upload sessions: fragments in multiples of 320 KiB (the last may be shorter),
each request under 60 MiB, sent in order, to a pre-authenticated session URL that gets no bearer
token. The session URL is kept (encrypted) by the copy service, so a copy that starts again asks
OneDrive how far the session got and sends only the rest. Graph cannot list upload sessions; an
abandoned one expires by itself at Microsoft (its expirationDateTime, days after its last
fragment), so `sweep_uploads` has nothing to do.
"""
import json
import time
from typing import BinaryIO, Iterator
from urllib.parse import quote

import requests

from portal.core.errors import DamagedInTransit, StorageRefused, StorageUnavailable
from portal.core.files import FileEntry
from portal.core.hashes import QuickXorHash
from portal.core.libraries import LIBRARIES, is_ignored_entry
from portal.core.names import escape_component, unescape_component
from portal.core.paths import library_parts
from portal.storage import answers
from portal.storage.base import Source, Upload, UploadState, json_object
from portal.storage.kit import MANIFEST, InOrderUpload, ManifestRecords, mtime_ns, response_stream
from portal.storage.oauth import PROVIDERS, OAuthStorage

FRAGMENT_UNIT = 320 * 1024  # every fragment but the last is a multiple of this
MAX_REQUEST = 60 * 1024 * 1024  # each fragment must be smaller than this
PAGE_SIZE = 200  # children a listing page ($top)
HASH = "quickxor"
# Characters OneDrive does not take in names (control characters neither).
_FORBIDDEN = set('"*:<>?/\\|')


LISTING = "OneDrive answered a listing"


def _quick_xor_of(item: dict) -> str | None:
    return ((item.get("file") or {}).get("hashes") or {}).get("quickXorHash")


def _modified(item: dict) -> int:
    """A driveItem's lastModifiedDateTime in nanoseconds (0 when it has none)."""
    return mtime_ns(item.get("lastModifiedDateTime")) or 0


class OneDriveStorage(ManifestRecords, OAuthStorage):
    """A folder in a OneDrive account (personal or work/school) as a DP, through Microsoft Graph;
    the SHA-256 of what Depot wrote is kept in manifest records (portal.storage.kit)."""

    provider = PROVIDERS["onedrive"]
    hash_kind = HASH
    record_readers = 8

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._folders: set[str] = set()  # drive folders known to exist (created or seen)

    # --- addressing --------------------------------------------------------------------------

    @property
    def api(self) -> str:
        return self.config["DEPOT_ONEDRIVE_API_URL"].rstrip("/")

    def _at(self, drive_path: str, action: str = "") -> str:
        """The Graph URL of an item by its path from the drive's root (and an action on it)."""
        if not drive_path:
            return f"{self.api}/me/drive/root" + (f"/{action}" if action else "")
        return (f"{self.api}/me/drive/root:/{quote(drive_path, safe='/')}:"
                + (f"/{action}" if action else ""))

    def _item_url(self, item_id: str, action: str = "") -> str:
        return f"{self.api}/me/drive/items/{quote(str(item_id), safe='')}" + (
            f"/{action}" if action else "")

    def _drive_path(self, path: str) -> str:
        """The drive path of a Depot path (escaped components) inside the DP's folder."""
        library_parts(path, inside=False)
        names = []
        for component in path.split("/"):
            try:
                name = unescape_component(component).decode("utf-8")
            except UnicodeDecodeError:
                raise StorageRefused(f"OneDrive takes only UTF-8 names: {path} cannot be stored "
                                     f"in {self.name}") from None
            if not name or name in (".", "..") or any(
                    ch in _FORBIDDEN or ord(ch) < 32 or ord(ch) == 127 for ch in name):
                raise StorageRefused(f"OneDrive does not allow the name {component!r} (no "
                                     '" * : < > ? / \\ | or control characters): '
                                     f"{path} cannot be stored in {self.name}")
            names.append(name)
        return "/".join([self.folder.strip("/"), *names])

    def _manifest_path(self, path: str) -> str:
        folder = self.folder.strip("/")
        return f"{folder}/{MANIFEST}/" + self._drive_path(path)[len(folder) + 1:] + ".json"

    def error_message(self, response: requests.Response) -> str:
        """Graph's {"error": {"code", "message"}}: the message, with the code."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict) and (error.get("message") or error.get("code")):
            message = str(error.get("message") or "").strip()
            code = str(error.get("code") or "")
            return (f"{message} ({code})" if message and code else message or code)[:300]
        return super().error_message(response)

    # --- small calls -------------------------------------------------------------------------

    def _json(self, method: str, url: str, expect=(200,), **kw) -> tuple[int, dict]:
        response = self.request(method, url, expect=expect, **kw)
        body = json_object(response, empty_ok=True)
        if body is None:
            raise StorageRefused(f"OneDrive answered {self.name} with something that is not "
                                 "Graph's JSON: is DEPOT_ONEDRIVE_API_URL right?")
        return response.status_code, body

    def _item(self, drive_path: str) -> dict | None:
        """The driveItem at a drive path, or None."""
        status, item = self._json("GET", self._at(drive_path), expect=(200, 404))
        return item if status == 200 else None

    def _children(self, url: str) -> Iterator[dict]:
        """Every child of a folder, page by page; a missing folder has none."""
        params = {"$top": str(PAGE_SIZE)}
        while url:
            self.check_cancelled()
            status, page = self._json("GET", url, expect=(200, 404), params=params)
            if status == 404:
                return
            yield from page.get("value") or []
            url, params = page.get("@odata.nextLink"), None
            if url and not url.startswith(self.api + "/"):  # our token goes to Graph only
                raise StorageRefused(f"OneDrive gave {self.name} a next page outside "
                                     "DEPOT_ONEDRIVE_API_URL; listing stopped")

    def _ensure_folder(self, drive_path: str) -> None:
        """Create a folder and its parents where missing (Graph's upload sessions want the parent
        folder to exist). Two creating it at once is fine: the second finds it (409)."""
        if not drive_path or drive_path in self._folders:
            return
        item = self._item(drive_path)
        if item is None:
            parent, _, name = drive_path.rpartition("/")
            self._ensure_folder(parent)
            status, item = self._json(
                "POST", self._at(parent, "children"), expect=(200, 201, 409),
                json={"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"})
            if status == 409:  # made meanwhile by someone else
                item = self._item(drive_path) or {}
        if "folder" not in item:
            raise StorageRefused(f"{drive_path} in {self.name}'s OneDrive is not a folder")
        self._folders.add(drive_path)

    def _delete_at(self, drive_path: str) -> None:
        item = self._item(drive_path)
        if item is not None:
            self.request("DELETE", self._item_url(item["id"]), expect=(204, 404))

    def _put_small(self, drive_path: str, data: bytes, content_type: str) -> dict:
        """A simple upload (small files only: the manifest records, empty files)."""
        return self._json("PUT", self._at(drive_path, "content"), expect=(200, 201), data=data,
                          headers={"Content-Type": content_type})[1]

    # --- what each OAuth provider gives ------------------------------------------------------

    def account(self) -> dict:
        """{"id", "name"} of the signed-in Microsoft account (its sign-in name where it has one)."""
        _, me = self._json("GET", f"{self.api}/me")
        name = (me.get("userPrincipalName") or me.get("mail") or me.get("displayName")
                or me.get("id"))
        return {"id": me.get("id"), "name": name}

    # --- the storage interface ---------------------------------------------------------------

    def check(self) -> None:
        """The account answers, is the one this DP was connected to, and holds the folder."""
        me = self.account()
        expected = self.settings.get("account_id")
        if expected and me["id"] != expected:
            raise StorageRefused(f"{self.name} is now signed in as {me['name']}, not as "
                                 f"{self.settings.get('account') or expected}: reconnect it with "
                                 "the right account")
        item = self._item(self.folder.strip("/"))
        if item is None:
            raise StorageRefused(f"the folder {self.folder} is not in {me['name']}'s OneDrive "
                                 "(deleted or renamed?): create it again or reconnect the DP")
        if "folder" not in item:
            raise StorageRefused(f"{self.folder} in {me['name']}'s OneDrive is a file, not a "
                                 "folder")

    def ensure_layout(self) -> None:
        """Create the DP's folder and its six library folders where they are missing."""
        folder = self.folder.strip("/")
        self._ensure_folder(folder)
        present = {child["name"].lower() for child in self._children(self._at(folder, "children"))
                   if "folder" in child}
        for library in LIBRARIES:
            if library.lower() not in present:
                self._ensure_folder(f"{folder}/{library}")

    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """Every file under the six library folders with OneDrive's QuickXorHash (page by page);
        the hashes Depot recorded come from `fill_hashes`."""
        folder = self.folder.strip("/")
        for library in LIBRARIES:
            pending = [(self._at(f"{folder}/{library}", "children"), library, True)]
            while pending:
                url, prefix, top = pending.pop()
                for item in self._children(url):
                    name = item.get("name") or ""
                    if top and is_ignored_entry(name):
                        continue
                    path = f"{prefix}/{escape_component(name.encode('utf-8'))}"
                    if "folder" in item:
                        pending.append((self._item_url(item["id"], "children"), path, False))
                    elif "file" in item:
                        qx = _quick_xor_of(item)
                        yield FileEntry(path, answers.size_of(item.get("size"), LISTING),
                                        _modified(item),
                                        handle=item["id"], hashes={HASH: qx} if qx else {})
                    else:
                        problems.append(f"{path}: not a plain file or folder in OneDrive "
                                        "(a notebook or a shortcut?); skipped")

    def read_record(self, path: str) -> dict | None:
        """A file's manifest record, or None when there is none (or it is not readable JSON)."""
        try:
            drive_path = self._manifest_path(path)
        except StorageRefused:
            return None
        response = self.request("GET", self._at(drive_path, "content"), expect=(200, 302, 404))
        if response.status_code == 404:
            return None
        if response.status_code == 302:
            response = self.request("GET", response.headers.get("Location", ""), auth=False,
                                    expect=(200, 404))
            if response.status_code == 404:
                return None
        try:
            record = response.json()
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def write_record(self, path: str, record: dict) -> None:
        """Write a file's manifest record (a simple upload: records are small)."""
        self._put_small(self._manifest_path(path), json.dumps(record, sort_keys=True).encode(),
                        "application/json")

    def open_read(self, entry: FileEntry) -> BinaryIO:
        """The file's content, streamed from the short-lived download URL Graph redirects to."""
        handle = entry.handle
        if handle is None:
            item = self._item(self._drive_path(entry.path))
            if item is None:
                raise FileNotFoundError(entry.path)
            handle = item["id"]
        response = self.request("GET", self._item_url(handle, "content"), expect=(200, 302, 404),
                                stream=True)
        if response.status_code == 302:
            location = response.headers.get("Location", "")
            response.close()
            response = self.request("GET", location, auth=False, expect=(200, 404), stream=True)
        if response.status_code == 404:
            response.close()
            raise FileNotFoundError(entry.path)
        return response_stream(response, "OneDrive")

    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        """(size, mtime_ns) of the item now, or None when it is gone."""
        status, item = self._json("GET", self._item_url(entry.handle), expect=(200, 404)) \
            if entry.handle is not None else (404, {})
        if status == 404:
            return None
        return answers.size_of(item.get("size"), LISTING), _modified(item)

    def space(self) -> tuple[int | None, int | None]:
        """(remaining, total) of the drive's quota."""
        _, drive = self._json("GET", f"{self.api}/me/drive")
        quota = drive.get("quota") if isinstance(drive.get("quota"), dict) else {}
        return answers.quota(quota.get("remaining"), quota.get("total"),
                             "OneDrive answered a quota")

    def upload(self, source: Source, state: UploadState) -> Upload:
        """Resume the saved upload session of this version of the file, or start one; nothing is
        sent when the configured fragment size breaks Graph's rules."""
        chunk = self.config["DEPOT_ONEDRIVE_CHUNK"]
        if not isinstance(chunk, int) or chunk <= 0 or chunk % FRAGMENT_UNIT:
            raise StorageRefused(f"DEPOT_ONEDRIVE_CHUNK must be a multiple of 320 KiB "
                                 f"({FRAGMENT_UNIT} bytes), not {chunk}")
        if chunk >= MAX_REQUEST:
            raise StorageRefused(f"DEPOT_ONEDRIVE_CHUNK must be under 60 MiB ({MAX_REQUEST} "
                                 f"bytes), not {chunk}")
        drive_path = self._drive_path(source.path)
        if state.stale and state.stale.get("url"):  # an older version's session: drop it
            self._cancel_session(state.stale["url"])
            state.stale = None
        upload = _GraphUpload(self, source, state, drive_path, chunk)
        upload.start()
        return upload

    def _cancel_session(self, url: str) -> None:
        self.request("DELETE", url, auth=False, expect=(204, 404))

    def delete(self, path: str) -> None:
        """Delete a file or an asset's folder (OneDrive moves it to the recycle bin) and its
        manifest records; absent is fine."""
        library_parts(path)  # never a library folder itself, nor anything outside one
        drive_path = self._drive_path(path)
        self._delete_at(drive_path)
        self._delete_at(self._manifest_path(path))  # a file's record
        self._delete_at(self._manifest_path(path)[:-len(".json")])  # a folder's records

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """Graph's pre-authenticated download URL of the file. Microsoft fixes its lifetime (about
        an hour) whatever `ttl_seconds` asks; it carries no token of the account."""
        item = self._item(self._drive_path(path))
        if item is None or "file" not in item:
            raise StorageRefused(f"{path} is not in {self.name}")
        url = item.get("@microsoft.graph.downloadUrl")
        if not url:
            raise StorageRefused(f"OneDrive gave no download URL for {path} in {self.name}")
        return url


class _GraphUpload(InOrderUpload):
    """One file through a Graph upload session: fragments in order, each a multiple of 320 KiB
    (but the last) and under 60 MiB, to the session URL, which is itself the credential."""

    def __init__(self, backend: OneDriveStorage, source: Source, state: UploadState,
                 drive_path: str, chunk: int):
        self.backend, self.source, self.state = backend, source, state
        self.drive_path, self.chunk_size, self.size = drive_path, chunk, source.size
        self.url: str | None = None
        self.offset = self.saved_offset = 0
        self.item: dict | None = None  # the driveItem the last fragment made
        # Central may not have computed the QuickXorHash: then it is computed here as pieces go.
        self.expected = source.hashes.get(HASH)
        self._hasher = None if self.expected else QuickXorHash()

    def __repr__(self) -> str:
        return f"<_GraphUpload {self.source.path!r} at {self.offset}>"  # never the session URL

    # --- starting --------------------------------------------------------------------------

    def start(self) -> None:
        saved = self.state.data or {}
        if saved.get("url") and self._resume(saved["url"]):
            return
        if self._already_there():
            return
        if self.size == 0:
            return  # finish() writes it with a simple upload: sessions take no empty file
        parent = self.drive_path.rpartition("/")[0]
        self.backend._ensure_folder(parent)
        _, session = self.backend._json(
            "POST", self.backend._at(self.drive_path, "createUploadSession"), expect=(200,),
            json={"item": {"@microsoft.graph.conflictBehavior": "replace"}})
        self.url = session.get("uploadUrl")
        if not self.url:
            raise StorageRefused(f"OneDrive gave {self.backend.name} no upload URL")
        self.offset = 0
        self.save(session.get("expirationDateTime"))

    def _resume(self, url: str) -> bool:
        """Continue a saved session where OneDrive says it got; False if it is gone."""
        status, session = self.backend._json("GET", url, auth=False, expect=(200, 404))
        if status == 404:
            return False  # expired or finished: the caller looks at what is there
        ranges = session.get("nextExpectedRanges") or []
        try:
            offset = int(str(ranges[0]).split("-")[0]) if ranges else self.size
        except ValueError:
            offset = -1
        if offset < 0 or offset > self.size or (offset % FRAGMENT_UNIT and offset != self.size):
            self.backend._cancel_session(url)  # cannot continue within Graph's rules
            return False
        self.url, self.offset = url, offset
        if self._hasher is not None:  # the hash of what the session already holds
            self.catch_up(self._hasher, offset)
        self.saved_offset = offset
        return True

    def _already_there(self) -> bool:
        """True (and `done` set) when OneDrive holds this version already: its manifest record
        says so, or its size and QuickXorHash are central's (the record was not written)."""
        item = self.backend._item(self.drive_path)
        if item is None or "file" not in item or int(item.get("size") or -1) != self.size:
            return False
        current = _quick_xor_of(item)
        if not current:
            return False
        if self.backend.recorded_sha256(self.source.path, self.size, current) \
                != self.source.sha256:
            expected = self.expected
            if not expected:
                hasher = QuickXorHash()
                self.catch_up(hasher, self.size)
                expected = hasher.hexdigest()
            if current != expected:
                return False
            self._record(current)
        self.done = self._result(item, current)
        return True

    def save(self, expires: str | None = None) -> None:
        """The session URL and how far it got, in the copy's UploadState."""
        self.state.save({"url": self.url, "offset": self.offset, "chunk": self.chunk_size,
                         **({"expires": expires} if expires else {})})
        self.saved_offset = self.offset

    # --- the Upload interface --------------------------------------------------------------

    def send(self, offset: int, data: bytes) -> None:
        """PUT one fragment to the session URL (no Authorization header: the URL is the
        credential); a fragment Graph would refuse is never sent."""
        length, path = len(data), self.source.path
        if offset != self.offset:
            raise StorageRefused(f"{path}: OneDrive takes fragments in order; byte {offset} came "
                                 f"while byte {self.offset} is next")
        last = offset + length == self.size
        if length == 0 or offset + length > self.size:
            raise StorageRefused(f"{path}: a fragment of {length} bytes at {offset} does not fit "
                                 f"a file of {self.size}")
        if length >= MAX_REQUEST:
            raise StorageRefused(f"{path}: OneDrive fragments must be under 60 MiB, not {length} "
                                 "bytes")
        if length % FRAGMENT_UNIT and not last:
            raise StorageRefused(f"{path}: OneDrive fragments must be multiples of 320 KiB but "
                                 f"the last; {length} bytes is not")
        response = self.backend.request(
            "PUT", self.url, auth=False, data=data, expect=(200, 201, 202, 404, 416),
            headers={"Content-Range": f"bytes {offset}-{offset + length - 1}/{self.size}",
                     "Content-Length": str(length)})
        if response.status_code == 404:
            raise StorageUnavailable(f"the upload session of {path} at {self.backend.name} "
                                     "expired; the next try starts it again")
        if response.status_code == 416:
            raise StorageUnavailable(f"OneDrive expected other bytes of {path}; the next try "
                                     "continues from where OneDrive got")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if self._hasher is not None:
            self._hasher.update(data)
        self.offset = offset + length
        if response.status_code in (200, 201):
            self.item = body if isinstance(body, dict) else None
        elif not last:
            ranges = body.get("nextExpectedRanges") if isinstance(body, dict) else None
            if ranges and str(ranges[0]).split("-")[0] != str(self.offset):
                raise StorageUnavailable(f"OneDrive expects other bytes of {path} than Depot "
                                         "sent; the next try continues from where OneDrive got")

    def finish(self) -> dict:
        """Check the file OneDrive made (size, QuickXorHash), record its SHA-256 beside it."""
        path = self.source.path
        if self.size == 0:
            self.backend._ensure_folder(self.drive_path.rpartition("/")[0])
            self.item = self.backend._put_small(self.drive_path, b"", "application/octet-stream")
        if self.item is None:
            self.item = self.backend._item(self.drive_path)
            if self.item is None:
                raise StorageUnavailable(f"{path} is not at {self.backend.name} after its last "
                                         "fragment; the next try sends it again")
        actual = _quick_xor_of(self.item)
        for wait in (0.5, 1, 2):  # OneDrive for Business may compute the hash a moment later
            if actual is not None:
                break
            time.sleep(wait)
            self.item = self.backend._item(self.drive_path) or self.item
            actual = _quick_xor_of(self.item)
        expected = self.expected or self._hasher.hexdigest()
        size = int(self.item.get("size") or 0)
        if actual is None and size == self.size:
            # No hash to check against yet: the bytes are kept (the size matches), recorded
            # without a provider hash; a verify downloads and hashes this file.
            self.url = None
            return {"size": self.size, "mtime_ns": _modified(self.item), "sha256": None,
                    "hashes": {}}
        if size != self.size or actual != expected:
            self.backend.request("DELETE", self.backend._item_url(self.item["id"]),
                                 expect=(204, 404))
            self.url = None
            raise DamagedInTransit(
                f"{path} arrived damaged at {self.backend.name}: OneDrive has {size} bytes with "
                f"QuickXorHash {actual}, central {self.size} bytes with {expected}")
        self.url = None
        self._record(actual)
        return self._result(self.item, actual)

    def abort(self) -> None:
        """Cancel the session at OneDrive (gone already is fine)."""
        if self.url:
            self.backend._cancel_session(self.url)
            self.url = None

    # --- helpers ---------------------------------------------------------------------------

    def _record(self, quick: str) -> None:
        self.backend.record(self.source.path, self.size, self.source.sha256, quick)

    def _result(self, item: dict, quick: str) -> dict:
        return {"size": self.size, "mtime_ns": _modified(item), "sha256": self.source.sha256,
                "hashes": {HASH: quick}}
