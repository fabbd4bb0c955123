"""A local Microsoft identity platform + Graph v1.0 for tests: the part of OneDrive Depot uses,
with Graph's paths, JSON shapes, status codes and rules.

- `/common/oauth2/v2.0/authorize|token` (the shared fake OAuth provider; refresh tokens rotate);
- `GET /v1.0/me`, `GET /v1.0/me/drive` (quota);
- items by path (`/v1.0/me/drive/root:/a/b:`, `...:/children`, `...:/content`,
  `...:/createUploadSession`) and by id (`/v1.0/me/drive/items/{id}[/children|/content]`):
  GET, POST (create a folder), PUT content (simple upload, at most 4 MB), DELETE; names are matched
  without regard to case, as OneDrive does; children come in small pages (`@odata.nextLink`);
- upload sessions at pre-authenticated URLs (`/up/{token}`): a bearer token there is refused (401);
  fragments need Content-Range and Content-Length, must be multiples of 320 KiB but the last, under
  60 MiB, and start at the next expected byte (else 416); 202 until the last, then 201/200 with the
  driveItem; GET gives nextExpectedRanges; DELETE cancels; an expired or unknown session is 404;
- download URLs (`/dl/{token}`, in `@microsoft.graph.downloadUrl` and the 302 of `/content`), no
  auth, Range supported, dead after `download_ttl` seconds.

QuickXorHash is computed here from the stored bytes, independently of the client.
"""
import base64
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import quickxorhash
from flask import Flask, Response, jsonify, request

from tests.fakes.oauth_server import FakeOAuthProvider, FakeUser

FRAGMENT_UNIT = 320 * 1024
MAX_FRAGMENT = 60 * 1024 * 1024
SIMPLE_UPLOAD_MAX = 4 * 1024 * 1024
_FORBIDDEN = set('"*:<>?/\\|')
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")


def quick_xor(data: bytes) -> str:
    hasher = quickxorhash.quickxorhash()
    hasher.update(bytes(data))
    return base64.b64encode(hasher.digest()).decode()


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{int(t * 1000) % 1000:03d}Z"


@dataclass
class Item:
    id: str
    name: str
    parent: str | None
    folder: bool
    data: bytes = b""
    modified: float = field(default_factory=time.time)
    created: float = field(default_factory=time.time)
    quick_xor: str = ""


@dataclass
class Session:
    user: str
    parent: str
    name: str
    conflict: str
    expires: float
    size: int | None = None
    data: bytearray = field(default_factory=bytearray)


class FakeGraph(FakeOAuthProvider):
    """OneDrive through Graph; `user.files` maps item id -> Item (the root's id is `root`)."""

    authorize_path = "/common/oauth2/v2.0/authorize"
    token_path = "/common/oauth2/v2.0/token"
    rotate_refresh_tokens = True
    page_size = 3  # children a page at most, whatever $top asks: the client must follow pages
    download_ttl = 3600.0
    session_ttl = 3 * 86400.0
    quota_total = 5 * 1024 ** 3

    def __init__(self):
        self.sessions: dict[str, Session] = {}
        self.downloads: dict[str, tuple[str, str, float]] = {}  # token -> (user, item, expires)
        self.puts: list[dict] = []  # every PUT to an upload URL: start, length, status, auth
        self.fail_uploads: list[str] = []  # next upload PUTs: "503" or "drop"
        self.corrupt_next = 0
        self.after_put = None  # callable(number of PUTs so far), run after each upload PUT
        self.session_tokens: list[str] = []  # every upload session's secret, for leak checks
        self.downloaded: list[str] = []  # the path of every file whose content was downloaded
        # The next this-many file answers come without hashes, as OneDrive for Business gives
        # them while it is still computing them.
        self.hashless_answers = 0
        super().__init__()

    # --- test controls -------------------------------------------------------------------

    def add_user(self, user_id: str, name: str) -> FakeUser:
        user = super().add_user(user_id, name)
        user.files["root"] = Item("root", "root", None, True)
        return user

    def add_file(self, user_id: str, path: str, data: bytes, modified: float | None = None) -> Item:
        """Put a file in an account directly, as another program (an older console) did."""
        with self.lock:
            user = self.users[user_id]
            *folders, name = path.split("/")
            parent = self._make_folders(user, folders)
            return self._store(user, parent, name, bytes(data), "replace", modified)[0]

    def file(self, user_id: str, path: str) -> bytes | None:
        with self.lock:
            item = self._find(self.users[user_id], [p for p in path.split("/") if p])
            return item.data if item is not None and not item.folder else None

    def item(self, user_id: str, path: str) -> Item | None:
        with self.lock:
            return self._find(self.users[user_id], [p for p in path.split("/") if p])

    def paths(self, user_id: str) -> list[str]:
        """Every file of an account by path, sorted."""
        with self.lock:
            user = self.users[user_id]
            return sorted(self._path(user, item) for item in user.files.values() if not item.folder)

    def remove(self, user_id: str, path: str) -> None:
        """Delete a file or a folder (with what is in it) directly, as a person would."""
        with self.lock:
            user = self.users[user_id]
            self._remove(user, self._find(user, [p for p in path.split("/") if p]))

    def corrupt(self, user_id: str, path: str) -> None:
        """Flip a byte of a stored file (OneDrive's hash follows the bytes, as at Microsoft)."""
        with self.lock:
            item = self._find(self.users[user_id], path.split("/"))
            data = bytearray(item.data)
            data[len(data) // 2] ^= 0xFF
            item.data, item.quick_xor = bytes(data), quick_xor(data)

    def fail_next_uploads(self, count: int = 1, how: str = "503") -> None:
        """The next `count` upload PUTs fail: "503" answers an error, "drop" closes the connection
        without an answer (the fragment is not stored)."""
        with self.lock:
            self.fail_uploads.extend([how] * count)

    def expire_upload_sessions(self) -> None:
        with self.lock:
            for session in self.sessions.values():
                session.expires = 0

    def expire_download_links(self) -> None:
        with self.lock:
            self.downloads = {t: (u, i, 0) for t, (u, i, _) in self.downloads.items()}

    def upload_puts(self) -> list[dict]:
        with self.lock:
            return list(self.puts)

    # --- routes --------------------------------------------------------------------------

    def add_routes(self, app: Flask) -> None:
        app.add_url_rule("/v1.0/me", "me", self._me)
        app.add_url_rule("/v1.0/me/drive", "drive", self._drive)
        app.add_url_rule("/v1.0/me/drive/<path:rest>", "items", self._items,
                         methods=["GET", "POST", "PUT", "DELETE"])
        app.add_url_rule("/up/<token>", "upload", self._upload, methods=["GET", "PUT", "DELETE"])
        app.add_url_rule("/dl/<token>", "download", self._download)

    def _me(self):
        user = self.current_user()
        self.record()
        return jsonify({"id": user.id, "displayName": user.name,
                        "userPrincipalName": f"{user.id}@example.com",
                        "mail": f"{user.id}@example.com"})

    def _drive(self):
        user = self.current_user()
        self.record()
        with self.lock:
            used = sum(len(i.data) for i in user.files.values())
        return jsonify({"id": f"drive-{user.id}", "driveType": "personal",
                        "owner": {"user": {"id": user.id, "displayName": user.name}},
                        "quota": {"total": self.quota_total, "used": used, "deleted": 0,
                                  "remaining": self.quota_total - used, "state": "normal"}})

    def _items(self, rest: str):
        user = self.current_user()
        self.record()
        with self.lock:
            target, parts, action = self._resolve(user, rest)
            if request.method == "POST" and action == "createUploadSession":
                return self._create_session(user, parts)
            if request.method == "PUT" and action == "content":
                return self._simple_upload(user, parts)
            if target is None:
                self.error(404, "itemNotFound", "The resource could not be found.")
            if action == "" and request.method == "GET":
                return jsonify(self._json(user, target))
            if action == "" and request.method == "DELETE":
                self._remove(user, target)
                return "", 204
            if action == "children" and request.method == "GET":
                return self._list(user, target)
            if action == "children" and request.method == "POST":
                return self._create_folder(user, target)
            if action == "content" and request.method == "GET":
                if target.folder:
                    self.error(400, "invalidRequest", "Folders have no content.")
                return "", 302, {"Location": self._download_url(user, target)}
        self.error(400, "invalidRequest", f"{request.method} {action or 'item'} is not supported")

    # --- the drive -----------------------------------------------------------------------

    def _resolve(self, user: FakeUser, rest: str):
        """(item or None, path parts when addressed by path, action) of an items URL."""
        if rest == "root" or rest.startswith("root/"):
            return user.files["root"], [], rest[5:]
        if rest.startswith("root:"):
            body = rest[len("root:"):]
            path, _, action = body.partition(":")
            parts = [p for p in path.split("/") if p]
            return self._find(user, parts), parts, action.lstrip("/")
        if rest.startswith("items/"):
            item_id, _, action = rest[len("items/"):].partition("/")
            return user.files.get(item_id), None, action
        self.error(400, "invalidRequest", "Invalid request")

    def _find(self, user: FakeUser, parts: list[str]) -> Item | None:
        item = user.files["root"]
        for name in parts:
            item = self._child(user, item.id, name)
            if item is None:
                return None
        return item

    @staticmethod
    def _child(user: FakeUser, parent_id: str, name: str) -> Item | None:
        for item in user.files.values():
            if item.parent == parent_id and item.name.lower() == name.lower():
                return item
        return None

    def _path(self, user: FakeUser, item: Item) -> str:
        names = []
        while item.parent is not None:
            names.append(item.name)
            item = user.files[item.parent]
        return "/".join(reversed(names))

    def _check_name(self, name: str) -> None:
        if not name or name in (".", "..") or any(ch in _FORBIDDEN or ord(ch) < 32 for ch in name):
            self.error(400, "invalidRequest", "The provided name contains invalid characters.")

    def _make_folders(self, user: FakeUser, parts: list[str]) -> Item:
        item = user.files["root"]
        for name in parts:
            child = self._child(user, item.id, name)
            if child is None:
                self._check_name(name)
                child = Item(self._new_id(), name, item.id, True)
                user.files[child.id] = child
            elif not child.folder:
                self.error(409, "nameAlreadyExists", "A file with the same name exists.")
            item = child
        return item

    @staticmethod
    def _new_id() -> str:
        return secrets.token_hex(8).upper() + "!" + str(secrets.randbelow(10 ** 4))

    def _store(self, user: FakeUser, parent: Item, name: str, data: bytes, conflict: str,
               modified: float | None = None) -> tuple[Item, bool]:
        """Place a complete file; (item, created)."""
        self._check_name(name)
        existing = self._child(user, parent.id, name)
        if existing is not None:
            if conflict == "fail" or existing.folder:
                self.error(409, "nameAlreadyExists", "The specified item name already exists.")
            existing.data, existing.quick_xor = data, quick_xor(data)
            existing.modified = modified or time.time()
            return existing, False
        item = Item(self._new_id(), name, parent.id, False, data, modified or time.time(),
                    quick_xor=quick_xor(data))
        user.files[item.id] = item
        return item, True

    def _remove(self, user: FakeUser, item: Item) -> None:
        if item.id == "root":
            self.error(403, "accessDenied", "The root cannot be deleted.")
        for child in [i for i in user.files.values() if i.parent == item.id]:
            self._remove(user, child)
        del user.files[item.id]

    def _json(self, user: FakeUser, item: Item) -> dict:
        parent_path = self._path(user, user.files[item.parent]) if item.parent else None
        answer = {"id": item.id, "name": item.name,
                  "createdDateTime": _stamp(item.created),
                  "lastModifiedDateTime": _stamp(item.modified),
                  "parentReference": {"driveId": f"drive-{user.id}", "id": item.parent,
                                      "path": "/drive/root:" + (f"/{parent_path}" if parent_path
                                                                else "")}}
        if item.folder:
            children = [i for i in user.files.values() if i.parent == item.id]
            answer.update(folder={"childCount": len(children)},
                          size=sum(len(i.data) for i in children))
        else:
            answer.update(size=len(item.data),
                          file={"mimeType": "application/octet-stream",
                                "hashes": {"quickXorHash": item.quick_xor}})
            if self.hashless_answers > 0:
                self.hashless_answers -= 1
                del answer["file"]["hashes"]
            answer["@microsoft.graph.downloadUrl"] = self._download_url(user, item)
        return answer

    def _list(self, user: FakeUser, folder: Item):
        if not folder.folder:
            self.error(400, "invalidRequest", "The item is not a folder.")
        children = sorted((i for i in user.files.values() if i.parent == folder.id),
                          key=lambda i: i.name.lower())
        try:
            top = min(int(request.args.get("$top", self.page_size)), self.page_size)
            skip = int(request.args.get("$skiptoken", "0"))
        except ValueError:
            self.error(400, "invalidRequest", "Invalid paging parameters.")
        page = children[skip:skip + top]
        answer = {"value": [self._json(user, i) for i in page]}
        if skip + top < len(children):
            answer["@odata.nextLink"] = (f"{self.url}/v1.0/me/drive/items/{folder.id}/children"
                                         f"?$top={top}&$skiptoken={skip + top}")
        return jsonify(answer)

    def _create_folder(self, user: FakeUser, parent: Item):
        body = request.get_json(silent=True) or {}
        name = body.get("name")
        if not isinstance(body.get("folder"), dict) or not isinstance(name, str):
            self.error(400, "invalidRequest", "name and folder are required.")
        self._check_name(name)
        existing = self._child(user, parent.id, name)
        if existing is not None:
            conflict = body.get("@microsoft.graph.conflictBehavior", "fail")
            if conflict == "fail" or not existing.folder:
                self.error(409, "nameAlreadyExists", "The specified item name already exists.")
            return jsonify(self._json(user, existing)), 200
        item = Item(self._new_id(), name, parent.id, True)
        user.files[item.id] = item
        return jsonify(self._json(user, item)), 201

    def _simple_upload(self, user: FakeUser, parts: list[str] | None):
        if not parts:
            self.error(400, "invalidRequest", "A path to the new file is required.")
        data = request.get_data()
        if len(data) > SIMPLE_UPLOAD_MAX:
            self.error(413, "requestTooLarge", "Use an upload session for files over 4 MB.")
        parent = self._make_folders(user, parts[:-1])  # a simple upload makes missing folders
        item, created = self._store(user, parent, parts[-1], data, "replace")
        return jsonify(self._json(user, item)), 201 if created else 200

    # --- upload sessions -----------------------------------------------------------------

    def _create_session(self, user: FakeUser, parts: list[str] | None):
        if not parts:
            self.error(400, "invalidRequest", "A path to the new file is required.")
        parent = self._find(user, parts[:-1])
        if parent is None or not parent.folder:
            self.error(404, "itemNotFound", "The parent folder must exist before you create an "
                                            "upload session.")
        self._check_name(parts[-1])
        body = request.get_json(silent=True) or {}
        conflict = (body.get("item") or {}).get("@microsoft.graph.conflictBehavior", "replace")
        token = secrets.token_urlsafe(24)
        self.session_tokens.append(token)
        session = self.sessions[token] = Session(user.id, parent.id, parts[-1], conflict,
                                                 time.time() + self.session_ttl)
        return jsonify({"uploadUrl": f"{self.url}/up/{token}",
                        "expirationDateTime": _stamp(session.expires),
                        "nextExpectedRanges": ["0-"]})

    def _session(self, token: str) -> Session:
        session = self.sessions.get(token)
        if session is None or session.expires <= time.time():
            self.sessions.pop(token, None)
            self.error(404, "itemNotFound", "The upload session was not found or has expired.")
        return session

    def _ranges(self, session: Session) -> list[str]:
        done = len(session.data)
        return [f"{done}-{session.size - 1}" if session.size else f"{done}-"]

    def _upload(self, token: str):
        with self.lock:
            self.log.append((request.method, "/up/<session>", request.content_length or 0))
            if "Authorization" in request.headers:
                self.error(401, "unauthenticated", "Upload URLs are pre-authenticated: do not "
                                                   "send an Authorization header.")
            if request.method == "DELETE":
                self._session(token)
                del self.sessions[token]
                return "", 204
            session = self._session(token)
            if request.method == "GET":
                return jsonify({"expirationDateTime": _stamp(session.expires),
                                "nextExpectedRanges": self._ranges(session)})
            return self._put_fragment(token, session)

    def _put_fragment(self, token: str, session: Session):
        entry = {"range": request.headers.get("Content-Range"), "status": None,
                 "length": request.content_length or 0}
        self.puts.append(entry)
        try:
            failure = self.fail_uploads.pop(0) if self.fail_uploads else None
            if failure == "drop":
                entry["status"] = "dropped"
                request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
                return "", 500
            if failure:
                entry["status"] = int(failure)
                self.error(int(failure), "serviceNotAvailable", "Service unavailable, try later.")
            match = _CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
            length_header = request.headers.get("Content-Length")
            if not match or length_header is None:
                entry["status"] = 400
                self.error(400, "invalidRequest", "Content-Range and Content-Length are required.")
            start, end, total = (int(g) for g in match.groups())
            length = end - start + 1
            data = request.get_data()
            entry.update(start=start, length=len(data))
            if length <= 0 or int(length_header) != length or len(data) != length:
                entry["status"] = 400
                self.error(400, "invalidRequest", "Content-Length does not match Content-Range.")
            if session.size is not None and total != session.size or end >= total:
                entry["status"] = 400
                self.error(400, "invalidRequest", "The declared file size changed.")
            if length >= MAX_FRAGMENT:
                entry["status"] = 413
                self.error(413, "requestTooLarge", "Fragments must be smaller than 60 MiB.")
            if length % FRAGMENT_UNIT and end + 1 != total:
                entry["status"] = 400
                self.error(400, "invalidRequest", "The fragment size must be a multiple of "
                                                  "320 KiB.")
            if start != len(session.data):
                entry["status"] = 416
                response = jsonify({"error": {"code": "invalidRange",
                                              "message": "The requested range is not the next "
                                                         "expected one."},
                                    "nextExpectedRanges": self._ranges(session)})
                response.status_code = 416
                return response
            session.size = total
            session.data += data
            session.expires = time.time() + self.session_ttl
            if len(session.data) < total:
                entry["status"] = 202
                return jsonify({"expirationDateTime": _stamp(session.expires),
                                "nextExpectedRanges": self._ranges(session)}), 202
            user = self.users[session.user]
            del self.sessions[token]
            stored = bytes(session.data)
            if self.corrupt_next:
                self.corrupt_next -= 1
                stored = stored[:-1] + bytes([stored[-1] ^ 0xFF])
            parent = user.files.get(session.parent)
            if parent is None:
                entry["status"] = 404
                self.error(404, "itemNotFound", "The parent folder is gone.")
            item, created = self._store(user, parent, session.name, stored, session.conflict)
            entry["status"] = 201 if created else 200
            return jsonify(self._json(user, item)), entry["status"]
        finally:
            if self.after_put is not None:
                self.after_put(len(self.puts))

    # --- downloads -----------------------------------------------------------------------

    def _download_url(self, user: FakeUser, item: Item) -> str:
        token = secrets.token_urlsafe(24)
        self.downloads[token] = (user.id, item.id, time.time() + self.download_ttl)
        return f"{self.url}/dl/{token}"

    def _download(self, token: str):
        with self.lock:
            self.log.append(("GET", "/dl/<token>", 0))
            found = self.downloads.get(token)
            if found is None or found[2] <= time.time():
                self.error(401, "unauthenticated", "The download URL has expired.")
            user_id, item_id, _ = found
            item = self.users[user_id].files.get(item_id)
            if item is None:
                self.error(404, "itemNotFound", "The item is gone.")
            self.downloaded.append(self._path(self.users[user_id], item))
            data = item.data
        match = re.match(r"bytes=(\d+)-(\d*)$", request.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data):
                return Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            end = min(end, len(data) - 1)
            return Response(data[start:end + 1], 206, mimetype="application/octet-stream",
                            headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"})
        return Response(data, 200, mimetype="application/octet-stream")
